package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/warm"
)

// kvmnet-bridge-helper is a setuid front (package warm) too: a run by a
// caller it knows to be allowed, on a network that is up and whole, it
// takes itself; every other it hands to the kvmnet binary, the engine, with
// the caller's ids. These tests run it as QEMU does (a unix socket as --fd,
// the tap's descriptor received), setuid root from a copy in the test's
// directory, as root or as users with no /etc/passwd entry, in one mount
// namespace whose /etc carries the test's kvmnet.toml, passwd and group
// (so that the file's identity, the front's key, holds from run to run).

// Test users and groups: ids no account of the machine has.
const (
	bhUser    = 64500 // in group kvm
	bhOutside = 64501 // in no group
	bhNamed   = 64502 // "kvmnet-alice" in the test's /etc/passwd
	bhLabGID  = 64610 // "kvmnet-lab" in the test's /etc/group
)

// bhHost is a host with the setuid helper and a mount namespace for it.
type bhHost struct {
	*host
	dir    string // the setuid helper and kvmnet
	upper  string // the overlay's upper /etc
	holder *exec.Cmd
	kvm    int // group kvm's gid in the test's /etc/group
}

func newBHHost(t *testing.T, config string) *bhHost {
	t.Helper()
	for _, p := range []string{"setpriv", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s (util-linux)", p)
		}
	}
	h := newHost(t, "nftables", config)
	base := t.TempDir()
	b := &bhHost{host: h, dir: filepath.Join(base, "bin"), upper: filepath.Join(base, "etc", "up"), kvm: 64620}
	// The users must reach the helper: the test's directory and its parent are 0700.
	for _, d := range []string{filepath.Dir(base), base} {
		must(t, os.Chmod(d, 0o755))
	}
	must(t, os.MkdirAll(b.dir, 0o755))
	for _, name := range []string{"kvmnet-bridge-helper", "kvmnet", "kvmnet-netsvc"} {
		data, err := os.ReadFile(filepath.Join(bin, name))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(b.dir, name), data, 0o755))
	}
	must(t, os.Chmod(filepath.Join(b.dir, "kvmnet-bridge-helper"), os.ModeSetuid|0o755))

	// /etc: the file the helper reads, and accounts the allow lists name.
	cfg, err := os.ReadFile(h.Config)
	must(t, err)
	passwd, err := os.ReadFile("/etc/passwd")
	must(t, err)
	group, err := os.ReadFile("/etc/group")
	must(t, err)
	var groups []string
	for _, l := range strings.Split(strings.TrimSpace(string(group)), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 && f[0] == "kvm" {
			b.kvm, _ = strconv.Atoi(f[2])
		} else {
			groups = append(groups, l)
		}
	}
	groups = append(groups, fmt.Sprintf("kvm:x:%d:", b.kvm), fmt.Sprintf("kvmnet-lab:x:%d:", bhLabGID))
	for name, body := range map[string]string{
		"kvmnet/kvmnet.toml": string(cfg),
		"passwd":             string(passwd) + fmt.Sprintf("kvmnet-alice:x:%d:%d::/nonexistent:/bin/false\n", bhNamed, bhNamed),
		"group":              strings.Join(groups, "\n") + "\n",
	} {
		p := filepath.Join(b.upper, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(body), 0o644))
	}
	work := filepath.Join(base, "etc", "work")
	must(t, os.Mkdir(work, 0o755))

	// One mount namespace for every run, held by a sleeping process.
	mount := fmt.Sprintf("mount --make-rprivate / && mount -t overlay kvmnet-etc -o lowerdir=/etc,upperdir=%s,workdir=%s /etc && echo ready && exec sleep 3600", b.upper, work)
	b.holder = h.Cmd("unshare", "-m", "sh", "-c", mount)
	out, err := b.holder.StdoutPipe()
	must(t, err)
	must(t, b.holder.Start())
	t.Cleanup(func() { b.holder.Process.Kill(); b.holder.Wait() })
	buf := make([]byte, 6)
	if n, err := out.Read(buf); err != nil || string(buf[:n]) != "ready\n" {
		t.Fatalf("mount namespace for the helper: %q, %v", buf[:n], err)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// bhRun is how one run of the helper is made.
type bhRun struct {
	uid    int      // 0: root
	groups []int    // the caller's supplementary groups
	env    []string // its environment
	args   []string // nil: --use-vnet --br=br0 --fd=3
	fd     *os.File // in place of the socket as fd 3
	hangUp bool     // QEMU's end of the socket closed before the helper sends
	nice   bool     // run with nice 10
}

// run runs the helper as QEMU does and returns the tap's descriptor it
// received (nil if none), and the helper's stderr.
func (b *bhHost) run(r bhRun) (tap *os.File, stderr string, err error) {
	b.T.Helper()
	sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(b.T.(*testing.T), err)
	if r.hangUp {
		unix.Close(sv[0])
	} else {
		defer unix.Close(sv[0])
	}
	theirs := os.NewFile(uintptr(sv[1]), "helper socket")
	defer theirs.Close()
	argv := []string{"nsenter", "-t", strconv.Itoa(b.holder.Process.Pid), "-m", "-n", "--"}
	if r.uid != 0 {
		gs := "--clear-groups"
		if len(r.groups) > 0 {
			var s []string
			for _, g := range r.groups {
				s = append(s, strconv.Itoa(g))
			}
			gs = "--groups=" + strings.Join(s, ",")
		}
		argv = append(argv, "setpriv", "--reuid="+strconv.Itoa(r.uid), "--regid="+strconv.Itoa(r.uid), gs, "--")
	}
	args := r.args
	if args == nil {
		args = []string{"--use-vnet", "--br=br0", "--fd=3"}
	}
	if r.nice {
		argv = append(argv, "nice", "-n", "10")
	}
	argv = append(append(append(argv, "/usr/bin/env", "-i", "PATH=/usr/bin:/bin"), r.env...), filepath.Join(b.dir, "kvmnet-bridge-helper"))
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.ExtraFiles = []*os.File{theirs}
	if r.fd != nil {
		cmd.ExtraFiles[0] = r.fd
	}
	var e strings.Builder
	cmd.Stderr = &e
	err = cmd.Run()
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	if r.hangUp {
		return nil, e.String(), err
	}
	if _, oobn, _, _, rerr := unix.Recvmsg(sv[0], buf, oob, unix.MSG_DONTWAIT); rerr == nil && oobn > 0 {
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if len(msgs) == 1 {
			if fds, _ := unix.ParseUnixRights(&msgs[0]); len(fds) == 1 {
				tap = os.NewFile(uintptr(fds[0]), "tap")
				b.T.Cleanup(func() { tap.Close() })
			}
		}
	}
	return tap, e.String(), err
}

// mustRun runs the helper and fails the test unless it passed a tap on br0.
func (b *bhHost) mustRun(r bhRun) (tapName, stderr string) {
	b.T.Helper()
	tap, stderr, err := b.run(r)
	if err != nil || tap == nil {
		b.T.Fatalf("bridge helper as uid %d: %v, tap %v\n%s", r.uid, err, tap, stderr)
	}
	m := regexp.MustCompile(`tap=(tap\d+) `).FindStringSubmatch(stderr)
	if m == nil {
		b.T.Fatalf("bridge helper as uid %d: no tap in its line %q", r.uid, stderr)
	}
	if got := b.Master(m[1]); got != "br0" {
		b.T.Errorf("%s is on %q, not br0", m[1], got)
	}
	if mac := strings.TrimSpace(b.MustRun("cat", "/sys/class/net/"+m[1]+"/address")); !strings.HasPrefix(mac, "fe:") {
		b.T.Errorf("%s has MAC %s, want fe:…", m[1], mac)
	}
	if got := strings.TrimSpace(b.MustRun("cat", "/sys/class/net/"+m[1]+"/owner")); got != strconv.Itoa(r.uid) {
		b.T.Errorf("%s is owned by uid %s, want %d", m[1], got, r.uid)
	}
	var st unix.Stat_t
	if err := unix.Lstat(b.stateFile(".ports")+"/"+m[1], &st); err != nil {
		b.T.Errorf("%s not recorded as a port: %v", m[1], err)
	} else if st.Uid != 0 || st.Gid != 0 {
		b.T.Errorf("%s recorded in a file of uid %d gid %d, not root's", m[1], st.Uid, st.Gid)
	}
	return m[1], stderr
}

// stubEngine replaces kvmnet beside the helper with a script that says how
// it was run, and fails: a run that reaches it was handed over.
func (b *bhHost) stubEngine() {
	b.T.Helper()
	// bash -p keeps the effective uid the front handed over with.
	script := "#!/bin/bash -p\necho \"engine ran with $* ruid=$(id -ru) euid=$(id -u) env=$(env | grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=' | tr '\\n' ' ')fd3=$(readlink /proc/$$/fd/3)\" >&2\nexit 3\n"
	stub := filepath.Join(b.dir, ".stub")
	must(b.T.(*testing.T), os.WriteFile(stub, []byte(script), 0o755))
	must(b.T.(*testing.T), os.Rename(stub, filepath.Join(b.dir, "kvmnet")))
}

// portsAndTaps is what a run may make: the recorded ports and the taps.
func (b *bhHost) portsAndTaps() string {
	ents, _ := os.ReadDir(b.stateFile(".ports"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	links, _, _ := b.Run("ip", "-o", "link", "show", "type", "tun")
	return strings.Join(names, ",") + " | " + regexp.MustCompile(`(?m)^\d+: (\S+):.*$`).ReplaceAllString(strings.TrimSpace(links), "$1")
}

// upLine is the line of a successful bridge helper run, as the engine logs it.
var upLine = regexp.MustCompile(`^kvmnet-bridge-helper: up tap=tap\d+ network=default bridge=br0 mode=nat user="([^"]+)" changes="attach tap\d+ to br0" took=[0-9.]+[µm]?s\n$`)

// TestBridgeHelperWarm: after the engine's first run, runs of allowed
// callers (root, group kvm, by user name, by another group) are the front's
// alone: with the engine replaced by one that fails, they still get their
// tap, on br0, theirs, recorded; and they log the engine's line.
func TestBridgeHelperWarm(t *testing.T) {
	b := newBHHost(t, "[network.default]\nallow = [\"@kvm\", \"kvmnet-alice\", \"@kvmnet-lab\"]\n")
	b.mustRun(bhRun{uid: bhUser, groups: []int{b.kvm}})
	// The engine's line for a run on a whole network, which the front's
	// must equal: with no hot file, the front hands the run over.
	must(t, os.Remove(b.stateFile(warm.Ext)))
	if _, stderr := b.mustRun(bhRun{uid: bhUser, groups: []int{b.kvm}}); upLine.FindStringSubmatch(stderr) == nil {
		t.Errorf("the engine logged %q, which upLine does not match", stderr)
	}
	b.stubEngine()
	for _, r := range []struct {
		run  bhRun
		user string
	}{
		{bhRun{uid: 0}, "root (uid 0)"},
		{bhRun{uid: bhUser, groups: []int{b.kvm}}, "uid 64500"},
		{bhRun{uid: bhUser, groups: []int{b.kvm}, env: []string{"KVMNET_CONFIG=/nonexistent", "PATH=/nonexistent"}}, "uid 64500"},
		{bhRun{uid: bhNamed}, "kvmnet-alice (uid 64502)"},
		{bhRun{uid: bhOutside, groups: []int{1, bhLabGID}}, "uid 64501"},
		{bhRun{uid: bhUser, groups: []int{b.kvm}, args: []string{"--br=default", "--fd=3"}}, "uid 64500"},
	} {
		_, stderr := b.mustRun(r.run)
		if m := upLine.FindStringSubmatch(stderr); m == nil || m[1] != r.user {
			t.Errorf("uid %d: stderr %q, want the engine's line with user=%q", r.run.uid, stderr, r.user)
		}
	}
}

// TestBridgeHelperHandsOver: each thing the front cannot prove, before or
// after it became root, goes to the engine, with the caller's ids, the same
// arguments, QEMU's socket still open as fd 3 and PATH for all environment;
// and the front made nothing first (no tap, no port record).
func TestBridgeHelperHandsOver(t *testing.T) {
	b := newBHHost(t, "")
	kvmUser := bhRun{uid: bhUser, groups: []int{b.kvm}}
	b.mustRun(kvmUser)
	b.stubEngine()
	b.mustRun(kvmUser) // warm
	notSocket, err := os.Open("/dev/null")
	must(t, err)
	defer notSocket.Close()
	handed := func(what string, r bhRun, fd3 string) {
		t.Helper()
		before := b.portsAndTaps()
		tap, stderr, err := b.run(r)
		args := r.args
		if args == nil {
			args = []string{"--use-vnet", "--br=br0", "--fd=3"}
		}
		want := fmt.Sprintf("engine ran with %s ruid=%d euid=0 env=PATH=/usr/sbin:/usr/bin:/sbin:/bin fd3=%s", strings.Join(args, " "), r.uid, fd3)
		if tap != nil || err == nil || !strings.HasPrefix(stderr, "engine ran") {
			t.Errorf("%s: not handed to the engine: %v, tap %v, stderr %q", what, err, tap, stderr)
		} else if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: the engine ran as\n%q, want\n%q...", what, stderr, want)
		}
		if after := b.portsAndTaps(); after != before {
			t.Errorf("%s: the front made something: before %q, after %q", what, before, after)
		}
	}
	socket := "socket:["
	handed("a caller not allowed", bhRun{uid: bhOutside}, socket)
	handed("a caller in another group", bhRun{uid: bhOutside, groups: []int{bhLabGID}}, socket)
	handed("GODEBUG set", bhRun{uid: bhUser, groups: []int{b.kvm}, env: []string{"GODEBUG=x=1"}}, socket)
	handed("niced", bhRun{uid: bhUser, groups: []int{b.kvm}, nice: true}, socket)
	handed("an unknown --br", bhRun{uid: bhUser, groups: []int{b.kvm}, args: []string{"--br=eth0", "--fd=3"}}, socket)
	handed("--br twice", bhRun{uid: bhUser, groups: []int{b.kvm}, args: []string{"--br=br0", "--br=br0", "--fd=3"}}, socket)
	handed("--help", bhRun{uid: bhUser, groups: []int{b.kvm}, args: []string{"--help"}}, socket)
	handed("fd 3 not a socket", bhRun{uid: bhUser, groups: []int{b.kvm}, fd: notSocket}, "/dev/null")
	// The send fails once the tap is made, recorded and attached: it goes.
	handed("QEMU gone", bhRun{uid: bhUser, groups: []int{b.kvm}, hangUp: true}, socket)
	handed("QEMU gone, root", bhRun{uid: 0, hangUp: true}, socket)
	// The bridge down: the front finds it as root, under the lock.
	b.MustRun("ip", "link", "set", "br0", "down")
	handed("the bridge down", kvmUser, socket)
	b.MustRun("ip", "link", "set", "br0", "up")
	b.mustRun(kvmUser) // warm again

	// The configuration file changed: its allow lists may have.
	now := time.Now()
	must(t, os.Chtimes(filepath.Join(b.upper, "kvmnet/kvmnet.toml"), now, now))
	handed("the configuration touched", kvmUser, socket)
	must(t, os.Remove(filepath.Join(filepath.Dir(b.stateFile(".json")), warm.BridgeACLFile)))
	handed("no bridge helper cache", kvmUser, socket)
	// The network not whole: these the front finds as root, under the lock.
	must(t, os.Remove(b.stateFile(warm.Ext)))
	handed("no hot file", kvmUser, socket)
	handed("root, no hot file", bhRun{uid: 0}, socket)
}

// TestBridgeHelperRefused: a caller the allow list refuses gets the
// engine's one line, exit 2, and nothing is made, on a warm network too.
func TestBridgeHelperRefused(t *testing.T) {
	b := newBHHost(t, "")
	b.mustRun(bhRun{uid: bhUser, groups: []int{b.kvm}})
	if b.hotIno() == 0 {
		t.Fatal("the network is not warm")
	}
	before, record := b.portsAndTaps(), b.recordInode()
	for _, r := range []bhRun{{uid: bhOutside}, {uid: bhOutside, groups: []int{bhLabGID}}} {
		tap, stderr, err := b.run(r)
		want := fmt.Sprintf("kvmnet-bridge-helper: network default: uid %d not allowed: not in its allow list [\"@kvm\"] (allow = [...] in /etc/kvmnet/kvmnet.toml; group changes take effect at the next login)\n", r.uid)
		var exit *exec.ExitError
		if tap != nil || !errors.As(err, &exit) || exit.ExitCode() != 2 || stderr != want {
			t.Errorf("uid %d: %v, tap %v, stderr %q, want exit 2 and %q", r.uid, err, tap, stderr, want)
		}
	}
	if after := b.portsAndTaps(); after != before || b.recordInode() != record {
		t.Errorf("a refused run made something: before %q, after %q", before, after)
	}
}
