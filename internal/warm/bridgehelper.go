package warm

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/version"
)

// The bridge helper's front: kvmnet-bridge-helper, installed setuid root,
// which ordinary users' QEMU runs for -netdev bridge. Its common run, a VM
// of an allowed user on a network that is up and whole, it takes itself:
// make the tap, attach it, record it, pass it to QEMU. Every other run (a
// network down or not whole, a changed configuration, a user it cannot
// prove allowed, bad arguments, anything it doubts) it hands, before it has
// made anything or after undoing what it made, to the engine: the kvmnet
// binary as kvmnet-bridge-helper (cli.BridgeHelper), with the caller's ids
// as they came, the same arguments and descriptors, and a clean environment.
//
// What it trusts: its real ids (the caller), the root-owned state directory
// (the engine's BridgeACL and the network's hot file), /etc/passwd and
// /etc/group, and the identity of the root-owned configuration file. It
// reads nothing the caller names: --br is looked up in the BridgeACL, and
// only names found there become paths.

// BridgeHelperVerb names the bridge helper in its log lines.
var BridgeHelperVerb = Verb{Name: "bridge-helper", Up: true, Mode: "nat"}

// safePath is the engine's PATH (cli's safePath).
const safePath = "/usr/sbin:/usr/bin:/sbin:/bin"

// BridgeArgs is QEMU's bridge helper command line, as cli's parseBridgeArgs reads it.
type BridgeArgs struct {
	Vnet bool   // --use-vnet
	Br   string // --br=NAME
	FD   int    // --fd=N
}

// ParseBridgeArgs accepts what the engine accepts, in its plainest form:
// --use-vnet, --br=NAME and --fd=N, each at most once, --br and --fd given.
// Anything else is the engine's to refuse, in its words.
func ParseBridgeArgs(args []string) (BridgeArgs, bool) {
	a := BridgeArgs{FD: -1}
	if len(args) < 3 || len(args) > 4 {
		return a, false
	}
	vnets := 0
	for _, arg := range args[1:] {
		key, val, hasVal := strings.Cut(arg, "=")
		switch {
		case key == "--use-vnet" && !hasVal:
			a.Vnet = true
			vnets++
		case key == "--br" && hasVal && a.Br == "" && plainIfName(val) && aclWord(val):
			a.Br = val
		case key == "--fd" && hasVal && a.FD < 0:
			fd, err := strconv.Atoi(val)
			if err != nil || fd < 3 || fd > 1<<20 || strconv.Itoa(fd) != val {
				return a, false
			}
			a.FD = fd
		default:
			return a, false
		}
	}
	return a, a.Br != "" && a.FD >= 0 && vnets <= 1
}

// BridgeHelper runs kvmnet-bridge-helper with args (os.Args) and returns its
// exit code: the warm run's, or, when it hands the run to the engine, that
// of a failure to run it.
func BridgeHelper(args []string) int {
	start := time.Now()
	// Go's runtime has opened /dev/null on any of fds 0-2 the caller closed
	// (its checkfds, for every program), so that no file the helper opens
	// becomes its stdout or stderr.
	runtime.LockOSThread() // the thread whose ids the run changes (see becomeRoot)
	b, err := newBridgeRun()
	if err == nil {
		if err = b.warm(args); err == nil {
			b.log(start)
			return 0
		}
		if !b.sent {
			b.undo()
			err = b.restoreIDs()
		}
	}
	if err != nil && !errors.Is(err, errCold) {
		logLine(BridgeHelperVerb, logErr, err.Error())
		return 1
	}
	return bridgeEngine(args)
}

// ScrubEnv empties the environment, which the front never reads, and
// reports whether it held settings Go's runtime read before main (the
// garbage collector's and the scheduler's, GODEBUG): a run with any of them
// is the engine's, which resets them. (In its secure mode, for a setuid
// exec, the runtime forces GOTRACEBACK=none itself.)
func ScrubEnv() (runtimeSet bool) {
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "GODEBUG", "GOGC", "GOMEMLIMIT", "GOMAXPROCS":
			runtimeSet = true
		}
	}
	os.Clearenv()
	return runtimeSet
}

// bridgeRun is one warm run of the bridge helper.
type bridgeRun struct {
	run
	who      caller
	ids      [6]int // real, effective and saved uid, then gid, as the run began
	root     bool   // the ids were changed: restoreIDs puts them back
	acc      accountFiles
	lockPath string
	tapFD    int  // the tap made, -1 before
	recorded bool // the tap is recorded as the network's port
	sent     bool // QEMU has the tap: nothing to undo, nothing to hand over
	user     string
}

func newBridgeRun() (*bridgeRun, error) {
	b := &bridgeRun{run: run{v: BridgeHelperVerb, lock: -1, buf: newBuf()}, tapFD: -1}
	b.ids[0], b.ids[1], b.ids[2] = unix.Getresuid()
	b.who.uid = b.ids[0]
	if b.who.uid == 0 {
		return b, nil // root may, and keeps its ids
	}
	b.ids[3], b.ids[4], b.ids[5] = unix.Getresgid()
	groups, err := unix.Getgroups()
	if err != nil {
		return nil, errCold
	}
	b.who.gid, b.who.groups = b.ids[3], groups
	return b, nil
}

// warm makes the checks in the engine's order (arguments, configuration,
// network, allow list, socket), and only then, as root, the network's: it
// is up and whole (the hot file), under its lock. Then the tap.
func (b *bridgeRun) warm(args []string) error {
	if ScrubEnv() {
		return errCold
	}
	a, ok := ParseBridgeArgs(args)
	if !ok || b.ids[1] != 0 || !niceZero() {
		return errCold
	}
	stamp, err := rootConfigStamp()
	if err != nil {
		return errCold
	}
	key := version.Version + " " + stamp
	if b.nl, err = openSock(unix.NETLINK_ROUTE, b.buf); err != nil {
		return errCold
	}
	if b.dir, err = stateDir(b.nl); err != nil {
		return errCold
	}
	raw, err := readSized(b.dir+"/"+BridgeACLFile, maxACL, b.buf)
	if err != nil {
		return errCold
	}
	acl, err := ParseBridgeACL(raw)
	if err != nil || acl.Key != key {
		return errCold
	}
	n, ok := acl.Network(a.Br)
	if !ok || !b.who.allowed(n.Allow, &b.acc) || checkSocket(a.FD) != nil {
		return errCold
	}
	if err := b.becomeRoot(); err != nil {
		return err
	}
	if err := b.openNetwork(n.Name, key+" "+BridgeHelperVerb.Mode); err != nil {
		return err
	}
	if err := b.bridge(); err != nil {
		return err
	}
	if err := b.whole(); err != nil {
		return err
	}
	return b.attachNewTap(a)
}

// openNetwork takes the network's lock and reads its hot file, which must be
// for key (what the engine's up for a bridge helper caches it under).
func (b *bridgeRun) openNetwork(name, key string) (err error) {
	// The network is one the configuration defines (the engine named it in
	// the cache), whose lock the engine would make too: the front may take
	// it before it knows there is a hot file.
	hot := b.dir + "/" + name + Ext
	b.lockPath = b.dir + "/" + name + ".lock"
	if b.lock, err = lockNetwork(b.lockPath); err != nil {
		return errCold
	}
	raw, err := readSmall(hot, maxHot, b.buf)
	if err != nil {
		return errCold
	}
	if b.hot, err = Parse(raw); err != nil || b.hot.Key != key || b.hot.Network != name {
		return errCold
	}
	return nil
}

// attachNewTap makes the caller's tap, records it as the network's port,
// attaches it, lets the network go, and sends the tap to QEMU as the caller.
func (b *bridgeRun) attachNewTap(a BridgeArgs) (err error) {
	if b.tapFD, b.tap, err = newTap(a.Vnet, b.who.uid); err != nil {
		return err
	}
	if err := b.recordPort(); err != nil {
		return err
	}
	b.recorded = true
	if err := b.nl.setNewPort(b.tap, b.br, b.hot.Group); err != nil {
		return err
	}
	if b.hot.Isolate { // before QEMU has the tap: no guest runs yet
		ifr, err := unix.NewIfreq(b.tap)
		if err != nil {
			return errCold
		}
		if err := unix.IoctlIfreq(b.nl.fd, unix.SIOCGIFINDEX, ifr); err != nil {
			return errCold
		}
		if err := b.nl.setIsolated(int(ifr.Uint32())); err != nil {
			return err
		}
	}
	unix.Close(b.lock) // before the caller can signal the front
	b.lock = -1
	b.user = b.who.String(&b.acc)
	if err := b.dropToCaller(false); err != nil {
		return err
	}
	if err := unix.Sendmsg(a.FD, []byte{0}, unix.UnixRights(b.tapFD), nil, unix.MSG_NOSIGNAL); err != nil {
		return errCold
	}
	b.sent = true
	// The tap's descriptor and the netlink socket go with the process.
	return b.dropToCaller(true)
}

// undo removes what a warm run made before it failed: the port's record,
// under the network's lock, and the tap, which goes with its descriptor.
func (b *bridgeRun) undo() {
	if b.recorded {
		b.regainRoot()
		if b.lock < 0 {
			b.lock, _ = lockNetwork(b.lockPath)
		}
		_ = unix.Unlink(b.portsDir() + "/" + b.tap)
	}
	b.close()
	if b.tapFD >= 0 {
		unix.Close(b.tapFD)
	}
}

// log writes the engine's line for a run that succeeded (cli's runLogged).
func (b *bridgeRun) log(start time.Time) {
	logRun(b.v, start, "up", "tap", b.tap, "network", b.hot.Network, "bridge", b.hot.Bridge, "mode", b.hot.Mode,
		"user", b.user, "changes", "attach "+b.tap+" to "+b.hot.Bridge)
}

// rootConfigStamp is config.Stamp of the configuration file, once it passes
// the engine's loadRootConfig: it and every directory above it root's and
// writable by no one else, the file not a link. A missing file (or
// directory) is the built-in configuration: "PATH none".
func rootConfigStamp() (string, error) {
	for dir := configPath; dir != "/"; {
		dir = dir[:max(strings.LastIndexByte(dir, '/'), 1)]
		var st unix.Stat_t
		err := unix.Lstat(dir, &st)
		if err == nil && !rootOnly(&st, unix.S_IFDIR) {
			return "", errCold
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return "", err
		}
	}
	var st unix.Stat_t
	err := unix.Lstat(configPath, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		return configPath + " none", nil
	case err != nil:
		return "", err
	case !rootOnly(&st, unix.S_IFREG):
		return "", errCold
	}
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	return configPath + " " + strconv.FormatUint(st.Dev, 10) + ":" + strconv.FormatUint(st.Ino, 10) + ":" + n(st.Size) + ":" +
		n(st.Ctim.Sec) + "." + n(st.Ctim.Nsec) + ":" + n(st.Mtim.Sec) + "." + n(st.Mtim.Nsec), nil
}

// rootOnly is cli's rootOnly: a file of that kind, root's, writable by no group or other.
func rootOnly(st *unix.Stat_t, kind uint32) bool {
	return st.Mode&unix.S_IFMT == kind && st.Uid == 0 && st.Mode&0o022 == 0
}

// niceZero reports whether the caller left the nice value at 0. The engine
// resets it, with the rest of what root's processes would not have; the
// front, which holds the network's lock, does not run slowed down for the
// caller, so a niced run is the engine's. (Threads inherit it at their start,
// so the calling thread's is the process's.)
//
//	nice
func niceZero() bool {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	return err == nil && prio == 20 // the kernel's 20 - nice
}

// checkSocket reports whether fd is a unix socket (cli's checkSocket), in
// one call: SO_DOMAIN of anything but a socket is an error.
func checkSocket(fd int) error {
	if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_UNIX {
		return errCold
	}
	return nil
}
