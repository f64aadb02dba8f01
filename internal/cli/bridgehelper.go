package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/version"
)

// bridgeHelperName is the program QEMU runs for -netdev bridge,helper=.
const bridgeHelperName = "kvmnet-bridge-helper"

// BridgeHelperName is the argv[0] the kvmnet binary runs BridgeHelper by:
// the helper's front (package warm) execs it so.
const BridgeHelperName = bridgeHelperName

// bridgeArgs is QEMU's bridge helper command line: --use-vnet, --br=NAME,
// --fd=N (net/tap.c, net_bridge_run_helper).
type bridgeArgs struct {
	vnet bool   // --use-vnet: give the tap a vnet header if the kernel can
	br   string // --br=: a kvmnet network's name, or its bridge's
	fd   int    // --fd=: QEMU's end of a unix socket pair, where the tap's fd goes
}

// parseBridgeArgs reads QEMU's arguments, which an ordinary user controls:
// exactly the three options QEMU passes, each at most once, --br and --fd
// required, nothing else.
func parseBridgeArgs(args []string) (bridgeArgs, error) {
	a := bridgeArgs{fd: -1}
	if len(args) > 4 {
		return a, usagef("want --use-vnet, --br=NAME and --fd=N, got %d arguments", len(args)-1)
	}
	seen := map[string]bool{}
	for _, arg := range args[min(1, len(args)):] {
		key, val, hasVal := strings.Cut(arg, "=")
		if seen[key] {
			return a, usagef("%s given twice", config.Quote(key))
		}
		seen[key] = true
		switch {
		case key == "--use-vnet" && !hasVal:
			a.vnet = true
		case key == "--br" && hasVal:
			if err := config.CheckIfName(val); err != nil {
				return a, usagef("--br: %s", err.Error())
			}
			a.br = val
		case key == "--fd" && hasVal:
			fd, err := parseFD(val)
			if err != nil {
				return a, err
			}
			a.fd = fd
		default:
			return a, usagef("unknown argument %s: want --use-vnet, --br=NAME and --fd=N (see --help)", config.Quote(arg))
		}
	}
	switch {
	case a.br == "":
		return a, usagef("no --br=NAME: which network")
	case a.fd < 0:
		return a, usagef("no --fd=N: where to send the tap")
	}
	return a, nil
}

// parseFD accepts a descriptor number above 2 in plain decimal digits.
func parseFD(s string) (int, error) {
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 || fd > 1<<20 || strconv.Itoa(fd) != s {
		return 0, usagef("--fd=%s: want a descriptor number above 2", config.Quote(s))
	}
	return fd, nil
}

// BridgeHelper is kvmnet-bridge-helper: QEMU's -netdev bridge helper, run by
// ordinary users' QEMU and installed setuid root. It returns the exit code.
//
// Its caller is not trusted: the environment is cleared before anything else
// (Go's runtime has already made fds 0-2 safe and, in its secure mode for a
// setuid exec, GOTRACEBACK none), the caller's real ids are taken as who
// asks, and the ACL is checked before anything is made. It becomes wholly
// root (so that the caller cannot signal it or what it starts) while it sets
// the network up and makes the tap, then drops to the caller's ids before it
// touches the caller's socket. A tap that never reaches QEMU goes when the
// helper exits, and the network's daemon notices as for any VM's end.
func BridgeHelper(args []string) int {
	who := secureStart()
	if len(args) == 2 && (args[1] == "--help" || args[1] == "-h") {
		BridgeHelperUsage(os.Stdout)
		return ExitOK
	}
	if len(args) == 2 && args[1] == "--version" {
		fmt.Printf("%s %s\n", bridgeHelperName, version.Version)
		return ExitOK
	}
	return runLogged(bridgeHelperName, func() (helperResult, error) { return runBridgeHelper(args, who) })
}

func runBridgeHelper(args []string, who caller) (helperResult, error) {
	a, err := parseBridgeArgs(args)
	if err != nil {
		return helperResult{}, err
	}
	f, stamp, err := loadRootConfigStamp(config.DefaultPath)
	if f == nil { // a broken network is bridgeNetwork's to report, if it is --br's
		return helperResult{}, usageError{err.Error()}
	}
	n, err := bridgeNetwork(f, a.br)
	if err != nil {
		return helperResult{}, err
	}
	// What the front checks a warm run against: this file, as resolved for
	// the bridge helper, whose mode is natup's.
	key := version.Version + " " + stamp
	n.Source = key + " " + string(NatUp.Mode)
	if err := permitted(n, who, systemAccounts{}); err != nil {
		return helperResult{}, err
	}
	if err := checkSocket(a.fd); err != nil {
		return helperResult{}, err
	}
	if err := becomeRoot(); err != nil {
		return helperResult{}, err
	}
	tap, res, err := attachNewTap(n, a, who)
	if err != nil {
		return res, err
	}
	defer tap.Close()
	writeBridgeACL(f, key)
	if err := dropTo(who); err != nil {
		return res, err
	}
	if err := unix.Sendmsg(a.fd, []byte{0}, unix.UnixRights(int(tap.Fd())), nil, 0); err != nil {
		return res, fmt.Errorf("send tap %s to QEMU over fd %d: %w", res.tap, a.fd, err)
	}
	res.user = who.String()
	return res, nil
}

// attachNewTap makes the caller's tap and brings it onto network n, setting
// n up first if it is not, through the same lifecycle steps as kvmnet-natup.
// On failure the tap goes when its file is closed.
func attachNewTap(n config.Net, a bridgeArgs, who caller) (*os.File, helperResult, error) {
	res := helperResult{net: n, what: "up"}
	d, err := state.Open()
	if err != nil {
		return nil, res, err
	}
	tap, name, err := bridge.NewTap(bridge.TapOptions{VnetHdr: a.vnet, Owner: who.uid, HighMAC: true})
	if err != nil {
		return nil, res, err
	}
	res.tap = name
	if res.Result, err = lifecycle.Up(d, n, name); err != nil {
		tap.Close()
		return nil, res, err
	}
	return tap, res, nil
}

// bridgeNetwork resolves --br: the name of a network the file defines (or
// "default"), else the bridge of one. Only names the root-owned file knows
// are accepted, so the caller's string never becomes a path or a new network.
func bridgeNetwork(f *config.File, br string) (config.Net, error) {
	name := br
	if _, defined := f.Networks[br]; !defined && br != config.DefaultNetwork {
		var ok bool
		if name, ok = f.NetworkOnBridge(br); !ok {
			return config.Net{}, usagef("--br=%s: no network or network's bridge of that name in %s", br, f.Path)
		}
	}
	n, err := f.Network(name, NatUp.Mode)
	if err != nil {
		return config.Net{}, usageError{err.Error()}
	}
	return n, nil
}

// checkSocket refuses an --fd that is not a unix socket: the tap's
// descriptor goes nowhere else.
func checkSocket(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return usagef("--fd=%d: %s", fd, err.Error())
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return usagef("--fd=%d: not a socket", fd)
	}
	if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_UNIX {
		return usagef("--fd=%d: not a unix socket", fd)
	}
	return nil
}

// BridgeHelperUsage writes kvmnet-bridge-helper's --help (and man page).
func BridgeHelperUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: %[1]s [--use-vnet] --br=NETWORK --fd=N

QEMU's bridge helper, for VMs started by ordinary users:

  qemu-system-x86_64 ... -netdev bridge,id=n0,br=default,helper=/usr/libexec/%[1]s

It makes a tap owned by the calling user, brings it onto the kvmnet network
NETWORK (a network's name, or its bridge's), setting the network up on first
use as kvmnet-natup does, and passes the tap to QEMU over the unix socket N.
When the network's last tap goes (QEMU exited, or was killed), the network's
DHCP/DNS daemon tears it down; no downscript is needed. A network with no
daemon (isolated, or DHCP and DNS off) stays until "kvmnet gc".

Who may: root; for the default network, members of group %[2]s; for any
network, the users and @groups of its allow list in %[3]s.
Only that file is read, and only while root owns it and no one else can
write it; the environment (%[4]s among it) is ignored.
Exit status: 0 done, 1 failed (nothing left half-made), 2 bad arguments,
configuration, or not allowed.
`, bridgeHelperName, config.DefaultAllowGroup, config.DefaultPath, config.EnvPath)
}
