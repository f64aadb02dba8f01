// Package cli holds the command-line front ends of kvmnet's binaries, so that
// each main only picks one and maps its result to an exit code.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/runlog"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/version"
)

// Verb is one of the four helpers QEMU runs.
type Verb struct {
	Name string      // ifup, ifdown, natup, natdown
	Up   bool        // up (script=) or down (downscript=)
	Mode config.Mode // the mode a network has when the file gives it none
}

// The helpers, as installed: /usr/libexec/kvmnet-NAME.
var (
	IfUp    = Verb{Name: "ifup", Up: true, Mode: config.Isolated}
	IfDown  = Verb{Name: "ifdown", Mode: config.Isolated}
	NatUp   = Verb{Name: "natup", Up: true, Mode: config.NAT}
	NatDown = Verb{Name: "natdown", Mode: config.NAT}
)

// Exit codes of the helpers. QEMU only tells zero from non-zero.
const (
	ExitOK    = 0
	ExitFail  = 1 // the network could not be set up or torn down
	ExitUsage = 2 // bad arguments, bad configuration, too little privilege
)

// errUsage marks errors that are the caller's to fix.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == errUsage }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// Helper runs a helper with args (os.Args) and returns its exit code. The
// DHCP/DNS daemon a helper starts is a binary of its own (cmd/kvmnet-netsvc),
// so that the engine, started for every cold up and last down, does not link
// its protocol code.
func Helper(v Verb, args []string) int {
	prog := "kvmnet-" + v.Name
	switch opt := option(args); opt {
	case "--help", "-h":
		helperUsage(os.Stdout, prog, v)
		return ExitOK
	case "--version":
		fmt.Printf("%s %s\n", prog, version.Version)
		return ExitOK
	}
	return runLogged(prog, func() (helperResult, error) { return runHelper(v, args) })
}

// runLogged runs a helper's work under prog's log and maps its outcome to an
// exit code: the error is logged, or what the work did and its warnings.
func runLogged(prog string, run func() (helperResult, error)) int {
	log := runlog.Open(prog)
	defer log.Close()
	start := time.Now()
	res, err := run()
	if err != nil {
		log.Error(err)
		if errors.Is(err, errUsage) {
			return ExitUsage
		}
		return ExitFail
	}
	kv := []string{"tap", res.tap, "network", res.net.Name, "bridge", res.net.Bridge, "mode", string(res.net.Mode)}
	if res.user != "" {
		kv = append(kv, "user", res.user)
	}
	log.Info(res.what, append(kv, "changes", strings.Join(res.Changes, ","), "took", time.Since(start).Round(10*time.Microsecond).String())...)
	for _, w := range res.Warnings {
		log.Warn(w, "network", res.net.Name)
	}
	return ExitOK
}

// option returns the helper's only argument when it is an option: --help, -h
// or --version, and no link has that name. "--help" is a valid interface
// name, and QEMU calls a helper with its tap's name: a helper that printed
// its help instead would exit 0 and the VM start with no network. QEMU calls
// a helper only for a tap that exists, so a name no link has cannot be
// QEMU's. The lookup costs one netlink round trip, on this path only.
func option(args []string) string {
	if len(args) != 2 {
		return ""
	}
	switch a := args[1]; a {
	case "--help", "-h", "--version":
		if _, err := bridge.Link(a); errors.Is(err, bridge.ErrNoLink) {
			return a
		}
	}
	return ""
}

type helperResult struct {
	lifecycle.Result
	what string
	tap  string
	net  config.Net
	user string // the bridge helper's caller, as logged; "" for the tap scripts
}

func runHelper(v Verb, args []string) (helperResult, error) {
	if len(args) != 2 {
		return helperResult{}, usagef("want exactly one argument, the tap name, got %d (see --help)", len(args)-1)
	}
	tap := args[1]
	if err := config.CheckIfName(tap); err != nil {
		return helperResult{}, usageError{"tap: " + err.Error()}
	}
	if err := needNetAdmin(); err != nil {
		return helperResult{}, err
	}
	// A helper never leaves the namespace QEMU started it in.
	if err := bridge.KeepSocket(); err != nil {
		return helperResult{}, err
	}
	d, err := state.Open()
	if err != nil {
		return helperResult{}, err
	}
	name := config.FromProgram(args[0])
	n, err := resolveForHelper(d, name, v.Mode, true)
	if err != nil {
		return helperResult{}, err
	}
	res := helperResult{tap: tap, net: n, what: "down"}
	if v.Up {
		res.what = "up"
		res.Result, err = lifecycle.Up(d, n, tap)
		if errors.Is(err, lifecycle.ErrConfigStale) {
			if n, err = resolveForHelper(d, name, v.Mode, false); err != nil {
				return res, err
			}
			res.net = n
			res.Result, err = lifecycle.Up(d, n, tap)
		}
	} else {
		res.Result, err = lifecycle.Down(d, n, tap)
	}
	return res, err
}

// resolveForHelper resolves the network as loadNetwork does, or, when cached
// is true, takes the last up's cached resolution of this very file
// (lifecycle.CachedNetwork) if there is one.
func resolveForHelper(d state.Dir, name string, mode config.Mode, cached bool) (config.Net, error) {
	stamp, err := config.Stamp(config.Path())
	if err != nil {
		return config.Net{}, usageError{err.Error()}
	}
	// The version too: another build may resolve the same file otherwise.
	source := version.Version + " " + stamp + " " + string(mode)
	if cached {
		if n, ok := lifecycle.CachedNetwork(d, name, source); ok {
			return n, nil
		}
	}
	n, err := loadNetwork(name, mode)
	n.Source = source
	return n, err
}

// loadNetwork reads the configuration and resolves a network in it; its
// errors are the caller's to fix. A mistake in another network's section
// is not this network's: only a file-wide one (no File) stops it.
func loadNetwork(name string, mode config.Mode) (config.Net, error) {
	f, err := config.Load(config.Path())
	if f == nil {
		return config.Net{}, usageError{err.Error()}
	}
	n, err := f.Network(name, mode)
	if err != nil {
		return config.Net{}, usageError{err.Error()}
	}
	return n, nil
}

// needNetAdmin fails early and clearly when the process lacks CAP_NET_ADMIN,
// rather than halfway through with EPERM from the kernel.
func needNetAdmin() error {
	if !lifecycle.HasCap(unix.CAP_NET_ADMIN) {
		return usagef("needs CAP_NET_ADMIN: run as root, or with that capability as libvirt gives it")
	}
	return nil
}

func helperUsage(w io.Writer, prog string, v Verb) {
	role := "script"
	what := "Attaches TAP to its network's bridge, setting the network up on first use."
	if !v.Up {
		role = "downscript"
		what = "Takes TAP off its network's bridge, tearing the network down when it was the last."
	}
	fmt.Fprintf(w, `Usage: %[1]s TAP
       %[1]s@NETWORK TAP   (through a symlink of that name)

%[2]s
QEMU runs it as -netdev tap,ifname=TAP,%[3]s=/usr/libexec/%[1]s; libvirt as the
<%[3]s path=…/> of an <interface type='ethernet'>.

Without @NETWORK the network is "default": bridge br0, and for a NAT helper
gateway 192.168.100.1/24 with DHCP and DNS. A network defined in the
configuration file keeps its own mode; %[1]s only supplies %[4]s when it has none.

Configuration: %[5]s (or $%[6]s when run by root).
State and locks: /run/kvmnet/. Every run logs a line to stderr and syslog (tag kvmnet),
and one more per warning.
Exit status: 0 done, 1 failed (nothing left half-made), 2 bad arguments, configuration or privilege.
`, prog, what, role, v.Mode, config.DefaultPath, config.EnvPath)
}
