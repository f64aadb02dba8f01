// Package warm is the tap scripts' fast path. QEMU runs a script for every VM
// start and stop, and most of them are warm: a VM's up on a network that is
// already up and whole, or a VM's down that is not the network's last. The
// engine (package cli and everything below it) decides those from the same
// few facts every time, but a binary that links it takes longer to start
// than the facts take to check. So the four tap scripts are fronts: they link
// only this package (x/sys/unix and the standard library's smallest
// packages), check the facts the engine's last up proved and wrote down
// under the network's lock (the hot file, see Hot), attach or detach the
// tap, and log the engine's own line. Whatever they cannot prove (a cold up,
// a last down, a changed configuration file, a record mid-change, a bridge
// gone, rules flushed, a daemon dead, a tap that is not plain, bad
// arguments) they hand, unchanged, to the engine: the kvmnet binary, exec'd
// with the same arguments and environment and an argv[0] that names the
// helper and its network (engineArgv0), whose main runs that helper.
//
// Exactly as the engine: the front takes the network's lock the way package
// state does, records the port before it attaches it (so a killed front
// leaves what the engine's next run finishes), and touches nothing until
// every check has passed, so that handing over is always safe.
package warm

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/selfbin"
	"github.com/kvmnet/kvmnet/internal/version"
)

// Verb is one of the four tap scripts.
type Verb struct {
	Name string // ifup, ifdown, natup, natdown
	Up   bool   // up (script=) or down (downscript=)
	Mode string // the mode a network has when the file gives it none (config.Mode)
}

// The tap scripts, as cli names them.
var (
	IfUp    = Verb{Name: "ifup", Up: true, Mode: "isolated"}
	IfDown  = Verb{Name: "ifdown", Mode: "isolated"}
	NatUp   = Verb{Name: "natup", Up: true, Mode: "nat"}
	NatDown = Verb{Name: "natdown", Mode: "nat"}
)

// What the front knows of the configuration without linking package config;
// a test holds them equal to config's.
const (
	configPath     = "/etc/kvmnet/kvmnet.toml" // config.DefaultPath
	configEnv      = "KVMNET_CONFIG"           // config.EnvPath
	defaultNetwork = "default"                 // config.DefaultNetwork
	stateRoot      = "/run/kvmnet"             // state.Root
)

// Main runs tap script v with args (os.Args) and returns its exit code: the
// warm path's when it could take it, else the engine's, to which it hands
// the process.
func Main(v Verb, args []string) int {
	start := time.Now()
	r, err := prepare(v, args)
	if err == nil {
		var changes string
		if v.Up {
			changes, err = r.up()
		} else {
			changes, err = r.down()
		}
		r.close()
		if err == nil {
			r.log(start, changes)
			return 0
		}
	}
	return engine(v, args)
}

// errCold is any reason to hand a run to the engine.
var errCold = errors.New("not warm")

// run is one warm run: its network's hot file read under the network's lock.
type run struct {
	v    Verb
	tap  string
	dir  string // the namespace's state directory
	hot  *Hot
	lock int // the network's lock file, held
	nl   *sock
	br   link
	buf  []byte // newBuf: the netlink socket's and the reads'
}

// prepare checks what the engine checks of a run before it looks at the
// network, takes the network's lock and reads its hot file; any error hands
// the run to the engine.
func prepare(v Verb, args []string) (*run, error) {
	if len(args) != 2 || !plainIfName(args[1]) || !hasNetAdmin() {
		return nil, errCold // the engine says what is wrong
	}
	name, named := atNetwork(args[0])
	if !named {
		name = defaultNetwork
	}
	if name == "" || strings.ContainsAny(name, "./") {
		return nil, errCold
	}
	buf := newBuf()
	key, err := source(v, configOverride(buf))
	if err != nil {
		return nil, err
	}
	r := &run{v: v, tap: args[1], lock: -1, buf: buf}
	if err := r.open(name, key); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// open takes network name's lock and reads its hot file, which must be for
// key. The rtnetlink socket comes first: its namespace, the one QEMU started
// the script in, names the state directory.
func (r *run) open(name, key string) (err error) {
	if r.nl, err = openSock(unix.NETLINK_ROUTE, r.buf); err != nil {
		return err
	}
	if r.dir, err = stateDir(r.nl); err != nil {
		return err
	}
	// No hot file, no lock: the engine makes a network's lock file only once
	// the configuration defines the network.
	hot := r.dir + "/" + name + Ext
	var st unix.Stat_t
	if err := unix.Lstat(hot, &st); err != nil {
		return err
	}
	if r.lock, err = lockNetwork(r.dir + "/" + name + ".lock"); err != nil {
		return err
	}
	b, err := readSmall(hot, maxHot, r.buf)
	if err != nil {
		return err
	}
	if r.hot, err = Parse(b); err != nil {
		return err
	}
	if r.hot.Key != key || r.hot.Network != name {
		return errCold
	}
	return nil
}

func (r *run) close() {
	if r.nl != nil {
		r.nl.close()
	}
	if r.lock >= 0 {
		unix.Close(r.lock)
	}
}

// plainIfName reports whether s is an interface name the engine accepts
// (config.CheckIfName) in its plainest form: printable ASCII only.
func plainIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." || s[0] == '-' {
		return false // "-" also keeps --help and --version for the engine
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

// hasNetAdmin reports whether the process holds CAP_NET_ADMIN, as the engine
// requires of a tap script.
func hasNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capget(&hdr, &data[0]) == nil && data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0
}

// source is the key the engine caches a network's resolution under
// (config.Net.Source): the version, the identity of the configuration file
// (path, or configOverride's when not "") as config.Stamp gives it, and the
// helper's mode.
func source(v Verb, override string) (string, error) {
	path := configPath
	if override != "" {
		path = override
	}
	var st syscall.Stat_t
	err := syscall.Stat(path, &st)
	if errors.Is(err, syscall.ENOENT) {
		return version.Version + " " + path + " none " + v.Mode, nil
	}
	if err != nil {
		return "", err
	}
	// One string built on the stack, then copied once: each string built on
	// the way was an allocation of its own size, a new span and its faults.
	var stack [256]byte
	b := append(append(append(stack[:0], version.Version...), ' '), path...)
	for i, n := range [7]int64{int64(st.Dev), int64(st.Ino), st.Size, st.Ctim.Sec, st.Ctim.Nsec, st.Mtim.Sec, st.Mtim.Nsec} {
		b = append(b, " :::.:."[i])
		if i < 2 {
			b = strconv.AppendUint(b, uint64(n), 10) // dev and ino are unsigned
		} else {
			b = strconv.AppendInt(b, n, 10)
		}
	}
	return string(append(append(b, ' '), v.Mode...)), nil
}

// configOverride is the configuration file $KVMNET_CONFIG names, which the
// engine heeds for root only (config.Path); "" for none.
func configOverride(buf []byte) string {
	if os.Getuid() != 0 {
		return ""
	}
	return startEnv(configEnv, buf)
}

// startEnv returns the value of the environment variable name as the
// process began with it (the first definition, as os.Getenv takes), read
// from /proc/self/environ into buf. Not os.Getenv: its first call copies the
// whole environment into a map, a third of the instructions a warm run's own
// code executes (36,000 of 110,000 by callgrind, with a shell's 37
// variables). The front never changes its environment. A file that does not
// fit in buf, or no /proc, is os.Getenv's.
func startEnv(name string, buf []byte) string {
	b, err := readSmall("/proc/self/environ", len(buf)-1, buf)
	if err != nil {
		return os.Getenv(name)
	}
	return lookupEnv(b, name)
}

// lookupEnv returns the value of the first definition of name in environ,
// NUL-separated NAME=VALUE entries as /proc/PID/environ holds them.
func lookupEnv(environ []byte, name string) string {
	for len(environ) > 0 {
		kv := environ
		if i := bytes.IndexByte(environ, 0); i >= 0 {
			kv, environ = environ[:i], environ[i+1:]
		} else {
			environ = nil
		}
		if len(kv) > len(name) && kv[len(name)] == '=' && string(kv[:len(name)]) == name {
			return string(kv[len(name)+1:])
		}
	}
	return ""
}

// engine hands the run to the kvmnet binary, with the same arguments and
// environment, and an argv[0] that names the helper and keeps the network
// its own argv[0] names (engineArgv0). It returns only when it could not,
// with the exit code of a failed run.
func engine(v Verb, args []string) int {
	exe, err := selfbin.Kvmnet()
	if err == nil {
		argv := []string{engineArgv0(v, "")}
		if len(args) > 0 {
			argv = append([]string{engineArgv0(v, args[0])}, args[1:]...)
		}
		err = unix.Exec(exe, argv, os.Environ())
		err = errors.New("run " + exe + ": " + err.Error())
	} else if _, ok := err.(*selfbin.NotFoundError); ok {
		err = errors.New(err.Error() + " (it sets networks up)")
	}
	logLine(v, logErr, err.Error())
	return 1
}

// engineArgv0 is the argv[0] kvmnet runs helper v by: kvmnet-VERB, with the
// @NETWORK of the script's own argv[0] when it has one (kvmnet-natup@lab:
// network lab, as config.FromProgram reads it). Not the script's argv[0]
// itself: QEMU may run it by another name (/etc/qemu-ifup, a link to
// kvmnet-natup), which would not tell kvmnet which helper to be.
func engineArgv0(v Verb, argv0 string) string {
	if name, named := atNetwork(argv0); named {
		return "kvmnet-" + v.Name + "@" + name
	}
	return "kvmnet-" + v.Name
}

// atNetwork returns the network a script's argv[0] names: what follows the
// last @ of its base name (config.FromProgram), and whether there is one.
func atNetwork(argv0 string) (name string, named bool) {
	i := strings.LastIndexByte(argv0, '@')
	if i < 0 || strings.LastIndexByte(argv0, '/') > i {
		return "", false
	}
	return argv0[i+1:], true
}
