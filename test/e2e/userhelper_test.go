package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Ordinary users' VMs through kvmnet-bridge-helper (-netdev bridge). The
// helper is copied, root-owned and setuid, into the test's directory, and
// reads only /etc/kvmnet/kvmnet.toml: each QEMU runs in a mount namespace of
// its own whose /etc is an overlay carrying the test's file (the machine's
// /etc is not touched), as a user with no /etc/passwd entry (setpriv), in
// group kvm or not.

// Test users: uids no account has.
const (
	userA = 64500
	userB = 64501
	userC = 64502
)

// userWorld is a world with the setuid helper and a root-owned config.
type userWorld struct {
	*world
	helper  string            // the setuid copy of kvmnet-bridge-helper
	rootCfg string            // what /etc/kvmnet/kvmnet.toml holds for the QEMUs
	kvm     int               // group kvm's gid
	evil    string            // a directory of fake iptables, nft and ip that leave a mark when run
	etc     map[string]string // more files of the QEMUs' /etc, e.g. passwd
	runs    atomic.Int32
}

func newUserWorld(t *testing.T, extra string) *userWorld {
	t.Helper()
	w := newWorld(t, "")
	g, err := user.LookupGroup("kvm")
	if err != nil {
		t.Skip("no group kvm on this machine")
	}
	kvm, _ := strconv.Atoi(g.Gid)
	for _, p := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s (util-linux)", p)
		}
	}
	// The users must reach the helper: the test's directory and its parent are 0700.
	for _, d := range []string{filepath.Dir(w.dir), w.dir} {
		must(t, os.Chmod(d, 0o755))
	}
	sbin := filepath.Join(w.dir, "sbin")
	must(t, os.Mkdir(sbin, 0o755))
	for _, b := range []string{"kvmnet-bridge-helper", "kvmnet", "kvmnet-netsvc"} {
		data, err := os.ReadFile(filepath.Join(binDir, b))
		if err != nil {
			t.Skipf("no %s in %s: run make build", b, binDir)
		}
		must(t, os.WriteFile(filepath.Join(sbin, b), data, 0o755))
	}
	uw := &userWorld{world: w, helper: filepath.Join(sbin, "kvmnet-bridge-helper"), kvm: kvm,
		rootCfg: fmt.Sprintf("lease_dir = %q\n%s", filepath.Join(w.dir, "leases"), extra)}
	must(t, os.Chmod(uw.helper, os.ModeSetuid|0o755)) // after the write: a write clears the setuid bit
	uw.evil = filepath.Join(w.dir, "evil")
	must(t, os.Mkdir(uw.evil, 0o755))
	for _, p := range []string{"iptables", "iptables-save", "iptables-restore", "iptables-nft", "nft", "ip", "xtables-nft-multi"} {
		script := fmt.Sprintf("#!/bin/sh\ntouch %s/ran-%s\nexit 1\n", uw.evil, p)
		must(t, os.WriteFile(filepath.Join(uw.evil, p), []byte(script), 0o755))
	}
	return uw
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// as returns the argv prefix that runs QEMU as uid with groups, in a mount
// namespace whose /etc/kvmnet/kvmnet.toml is uw.rootCfg.
func (uw *userWorld) as(uid int, groups ...int) []string {
	uw.t.Helper()
	ovl := filepath.Join(uw.dir, "etc-"+strconv.Itoa(int(uw.runs.Add(1))))
	for _, d := range []string{"up/kvmnet", "work"} {
		must(uw.t, os.MkdirAll(filepath.Join(ovl, d), 0o755))
	}
	must(uw.t, os.WriteFile(filepath.Join(ovl, "up/kvmnet/kvmnet.toml"), []byte(uw.rootCfg), 0o644))
	for name, body := range uw.etc {
		must(uw.t, os.WriteFile(filepath.Join(ovl, "up", name), []byte(body), 0o644))
	}
	mount := fmt.Sprintf("mount --make-rprivate / && mount -t overlay kvmnet-etc -o lowerdir=/etc,upperdir=%s/up,workdir=%s/work /etc && exec \"$@\"", ovl, ovl)
	return append([]string{"unshare", "-m", "sh", "-c", mount, "sh"}, setpriv(uid, groups...)...)
}

// setpriv returns the argv prefix that runs a program as uid with exactly groups.
func setpriv(uid int, groups ...int) []string {
	gs := "--clear-groups"
	if len(groups) > 0 {
		var s []string
		for _, g := range groups {
			s = append(s, strconv.Itoa(g))
		}
		gs = "--groups=" + strings.Join(s, ",")
	}
	return []string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), gs, "--"}
}

// hostileEnv is a user's environment that would mislead a careless setuid
// program: another config (an isolated network on another bridge, open to
// all), fake iptables first in PATH, a traceback that dumps core.
func (uw *userWorld) hostileEnv() []string {
	uw.t.Helper()
	cfg := filepath.Join(uw.dir, "users-own.toml")
	must(uw.t, os.WriteFile(cfg, []byte("[network.default]\nmode = \"isolated\"\nbridge = \"evil0\"\nallow = [\"@nogroup\"]\n"), 0o666))
	return []string{"PATH=" + uw.evil + ":/usr/sbin:/usr/bin:/sbin:/bin", "KVMNET_CONFIG=" + cfg,
		"GOTRACEBACK=crash", "GODEBUG=execerrdot=0", "GOMAXPROCS=1", "GOGC=1", "HOME=/nonexistent"}
}

// netdev is QEMU's -netdev for the helper on network br.
func (uw *userWorld) netdev(br string) string {
	return "bridge,id=n0,br=" + br + ",helper=" + qemuEscape(uw.helper)
}

// noMarks fails unless no fake tool of uw.evil ran.
func (uw *userWorld) noMarks() {
	uw.t.Helper()
	ents, _ := os.ReadDir(uw.evil)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "ran-") {
			uw.t.Errorf("the helper ran %s from the user's PATH", strings.TrimPrefix(e.Name(), "ran-"))
		}
	}
}

// A user in group kvm boots a guest through the helper with a hostile
// environment and process settings: it gets DHCP from the root config's
// network and reaches the outside; the daemon the helper started has neither
// the user's soft RLIMIT_NOFILE nor their nice value; kvmnet status names the user beside the
// tap; when QEMU powers off, with no downscript, the network goes.
func TestUserVM(t *testing.T) {
	t.Parallel()
	uw := newUserWorld(t, "")
	var status, limits, nice string
	hostile := append(uw.as(userA, uw.kvm), "prlimit", "--nofile=200:", "--", "nice", "-n", "10")
	b := uw.boot(guest{
		Name: "u1", Net: "dhcp", Check: []string{toOutside}, Hold: 3, // status runs meanwhile
		Netdev: uw.netdev("default"), Prefix: hostile, Env: uw.hostileEnv(),
		OnLine: func(l string, _ *os.Process) {
			if strings.HasPrefix(l, "done") {
				status, _ = uw.run(filepath.Join(binDir, "kvmnet"), "status", "--json")
				limits, nice = daemonSettings(t, status)
			}
		},
	})[0]
	b.ran(t)
	masqueraded(t, uw.world, b)
	if !tapOf(t, status, userA) {
		t.Errorf("kvmnet status while u1 ran names no tap of uid %d:\n%s", userA, status)
	}
	if strings.Contains(limits, " 200 ") || !strings.Contains(limits, "Max open files") || nice != "0" {
		t.Errorf("the daemon kept the user's settings (soft RLIMIT_NOFILE 200, nice 10): nice %q, limits:\n%s", nice, limits)
	}
	uw.noMarks()
	uw.checkRestored()
}

// daemonSettings returns the limits and the nice value of the daemon that
// the status JSON names.
func daemonSettings(t *testing.T, statusJSON string) (limits, nice string) {
	t.Helper()
	var s struct {
		Networks []struct{ Services struct{ PID int } }
	}
	if err := json.Unmarshal([]byte(statusJSON), &s); err != nil || len(s.Networks) == 0 || s.Networks[0].Services.PID == 0 {
		t.Errorf("no daemon in kvmnet status: %v\n%s", err, statusJSON)
		return "", ""
	}
	pid := strconv.Itoa(s.Networks[0].Services.PID)
	l, _ := os.ReadFile("/proc/" + pid + "/limits")
	stat, _ := os.ReadFile("/proc/" + pid + "/stat")
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
		if f := strings.Fields(string(stat[i+1:])); len(f) > 16 {
			nice = f[16] // field 19 of stat: nice
		}
	}
	return string(l), nice
}

// tapOf reports whether the status JSON has a tap on the default network
// owned by uid.
func tapOf(t *testing.T, statusJSON string, uid int) bool {
	t.Helper()
	var s struct {
		Networks []struct {
			Name  string
			Ports []struct {
				Name string
				UID  *int
			}
		}
	}
	if err := json.Unmarshal([]byte(statusJSON), &s); err != nil {
		t.Errorf("kvmnet status --json: %v", err)
		return false
	}
	for _, n := range s.Networks {
		for _, p := range n.Ports {
			if n.Name == "default" && p.UID != nil && *p.UID == uid {
				return true
			}
		}
	}
	return false
}

// QEMU killed with SIGKILL runs nothing: the network still goes, by itself,
// for a user's VM through the helper and for root's with script=kvmnet-natup
// and no gc.
func TestKilledVMCleansUp(t *testing.T) {
	t.Run("user's helper VM", func(t *testing.T) {
		t.Parallel()
		uw := newUserWorld(t, "")
		b := uw.boot(guest{
			Name: "k1", Net: "dhcp", Hold: 120, Check: []string{toOutside},
			Netdev: uw.netdev("br0"), Prefix: uw.as(userA, uw.kvm),
			OnLine: func(l string, q *os.Process) {
				if strings.HasPrefix(l, "done") {
					_ = q.Signal(syscall.SIGKILL)
				}
			},
		})[0]
		if _, ok := b.find("done"); !ok || !strings.Contains(fmt.Sprint(b.err), "killed") {
			b.dump(t)
			t.Fatalf("guest k1 did not come up and get killed: %v", b.err)
		}
		b.reached(t, toOutside)
		uw.checkRestored()
	})
	t.Run("root's script= VM", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, "")
		killQEMU(t, w)
		w.checkRestored()
	})
}

// A user not allowed on a network is refused with one line naming the
// network and why; QEMU does not start and nothing is made.
func TestUserRefused(t *testing.T) {
	t.Parallel()
	uw := newUserWorld(t, "[network.lab]\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\nallow = [\"@kvm\"]\n[network.dmz]\nmode = \"hostonly\"\naddress = \"10.78.0.1/24\"\n")
	for _, tc := range []struct {
		br     string
		uid    int
		groups []int
		why    string
	}{
		{"default", userC, nil, "network default: uid 64502 not allowed: not in its allow list [\"@kvm\"]"},
		{"dmz", userA, []int{uw.kvm}, "network dmz: uid 64500 not allowed: its allow list is empty"},
		{"eth0", userA, []int{uw.kvm}, "--br=eth0: no network or network's bridge of that name"},
	} {
		argv := append(append([]string{"ip", "netns", "exec", uw.host.Name}, uw.as(tc.uid, tc.groups...)...),
			"qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S", "-netdev", uw.netdev(tc.br))
		c := exec.Command(argv[0], argv[1:]...)
		c.Env = uw.hostileEnv()
		out, err := c.CombinedOutput()
		if err == nil {
			t.Errorf("uid %d on %s: QEMU started:\n%s", tc.uid, tc.br, out)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(l, "kvmnet-bridge-helper:") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], tc.why) {
			t.Errorf("uid %d on %s: helper said %q, want one line with %q; QEMU:\n%s", tc.uid, tc.br, lines, tc.why, out)
		}
		if now := uw.snap(); now != uw.before {
			t.Errorf("uid %d on %s: the host namespace changed:\nbefore %+v\nafter  %+v", tc.uid, tc.br, uw.before, now)
		}
	}
	if _, err := os.Stat(filepath.Join(uw.host.State, "default.json")); err == nil {
		t.Error("a refused run left a record of the default network")
	}
	uw.noMarks()
}

// Two users' VMs on one network: when one exits, the other keeps its network
// (the bridge, the daemon, its address) and is still reached; when it is
// killed, the network goes.
func TestTwoUsersOneNetwork(t *testing.T) {
	t.Parallel()
	uw := newUserWorld(t, "")
	var ip atomic.Value
	defer acquire(2)() // the held guest and the one booted beside it (bootIn)
	up, wait := uw.held(t, guest{
		Name: "s1", Net: "dhcp", Hold: 150, Check: []string{toOutside},
		Netdev: uw.netdev("default"), Prefix: uw.as(userA, uw.kvm),
		OnLine: func(l string, _ *os.Process) {
			if a, ok := strings.CutPrefix(l, "addr "); ok {
				ip.Store(strings.Split(a, "/")[0])
			}
		},
	})
	short := uw.bootIn(guest{
		Name: "s2", Net: "dhcp", Check: []string{toOutside},
		Netdev: uw.netdev("default"), Prefix: uw.as(userB, uw.kvm),
	})[0]
	short.ran(t)
	q := up()
	time.Sleep(3 * time.Second) // what a wrong teardown would take
	addr, _ := ip.Load().(string)
	if out, err := uw.run("ping", "-c", "1", "-W", "2", addr); err != nil {
		t.Errorf("s1 (%s) unreachable after s2 exited: %v\n%s", addr, err, out)
	}
	if out, err := uw.run("ip", "link", "show", "br0"); err != nil {
		t.Errorf("br0 gone after s2 exited:\n%s", out)
	}
	_ = q.Signal(syscall.SIGKILL)
	wait()
	uw.checkRestored()
}

// held boots g in the background, for a test that keeps it up (g.Hold) while
// it does more, holding the QEMU slot the caller took for it (bootIn). up
// waits until g's checks are done and returns its QEMU, to kill when the
// test is done with it; a guest that never got there fails the test. wait
// waits for g's boot to end. g.OnLine still sees every line.
func (uw *userWorld) held(t *testing.T, g guest) (up func() *os.Process, wait func()) {
	var stayer atomic.Pointer[os.Process]
	ready := make(chan struct{})
	var readyOnce sync.Once
	onLine := g.OnLine
	g.OnLine = func(l string, q *os.Process) {
		if onLine != nil {
			onLine(l, q)
		}
		if strings.HasPrefix(l, "done") {
			stayer.Store(q)
			readyOnce.Do(func() { close(ready) })
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var long *boot
	go func() {
		defer wg.Done()
		long = uw.bootIn(g)[0]
		readyOnce.Do(func() { close(ready) })
	}()
	up = func() *os.Process {
		<-ready
		q := stayer.Load()
		if q == nil {
			wg.Wait()
			long.dump(t)
			t.Fatalf("guest %s did not come up", g.Name)
		}
		return q
	}
	return up, wg.Wait
}

// libvirt's session mode (qemu:///session, libvirtd run by the user) runs
// the bridge helper its qemu.conf names for an <interface type='bridge'>,
// with the bridge's name: the guest gets DHCP and reaches the outside, and
// when the domain is destroyed the network goes.
func TestLibvirtSession(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"libvirtd", "virsh"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s (libvirt-daemon-system)", p)
		}
	}
	uw := newUserWorld(t, "")
	home, xdg := filepath.Join(uw.dir, "home"), filepath.Join(uw.dir, "xdg")
	for _, d := range []string{home, filepath.Join(home, ".config"), filepath.Join(home, ".config/libvirt"), xdg} {
		must(t, os.MkdirAll(d, 0o700))
		must(t, os.Chown(d, userA, userA))
	}
	must(t, os.WriteFile(filepath.Join(home, ".config/libvirt/qemu.conf"), []byte(fmt.Sprintf("bridge_helper = %q\n", uw.helper)), 0o644))
	// libvirt looks its user and group up: an /etc/passwd and /etc/group that
	// have them, in the overlay.
	passwd, err := os.ReadFile("/etc/passwd")
	must(t, err)
	group, err := os.ReadFile("/etc/group")
	must(t, err)
	uw.etc = map[string]string{
		"passwd": fmt.Sprintf("%skvmtest:x:%d:%d::%s:/bin/sh\n", passwd, userA, userA, home),
		"group":  fmt.Sprintf("%skvmtest:x:%d:\n", group, userA),
	}
	serial := filepath.Join(home, "serial.log")
	dom := filepath.Join(uw.dir, "sess1.xml")
	params := "console=ttyS0 quiet panic=-1 kvmnet.name=sess1 kvmnet.net=dhcp kvmnet.check=" + toOutside +
		" kvmnet.wait=60 kvmnet.hold=600 kvmnet.timeout=700"
	must(t, os.WriteFile(dom, []byte(fmt.Sprintf(`<domain type='qemu'>
  <name>sess1</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s/vmlinuz</kernel><initrd>%s/initrd.img</initrd><cmdline>%s</cmdline></os>
  <features><acpi/></features>
  <devices>
    <serial type='file'><source path='%s'/></serial>
    <interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>
  </devices>
</domain>
`, guestDir, guestDir, params, serial)), 0o644))
	virsh := func(args ...string) string {
		t.Helper()
		argv := append(append([]string{"ip", "netns", "exec", uw.host.Name}, uw.as(userA, uw.kvm)...), "virsh", "-c", "qemu:///session")
		c := exec.Command(argv[0], append(argv[1:], args...)...)
		c.Env = []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + xdg, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("virsh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { uw.killUsers(userA) })
	release := acquire(1)
	virsh("create", dom)
	deadline := time.Now().Add(4 * time.Minute)
	var console string
	for !strings.Contains(console, "KVMNET done") && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		b, _ := os.ReadFile(serial)
		console = string(b)
	}
	virsh("destroy", "sess1")
	release()
	if !strings.Contains(console, "KVMNET lease ip=") || !strings.Contains(console, "KVMNET ok tcp "+outsideIP+":80") {
		t.Fatalf("the session domain got no lease or did not reach the outside; its console:\n%s", console)
	}
	uw.killUsers(userA) // the session's libvirtd and virtlogd, which would linger for 2 minutes
	uw.checkRestored()
}

// killUsers kills the processes of uid in the host namespace: those the
// test's libvirt session started.
func (uw *userWorld) killUsers(uid int) {
	pids, _ := exec.Command("ip", "netns", "pids", uw.host.Name).Output()
	for _, p := range strings.Fields(string(pids)) {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/"+p, &st); err == nil && int(st.Uid) == uid {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// What README's threat model says of Go's runtime for a setuid binary, on
// this toolchain: a static binary exec'd setuid by a user runs in secure mode
// (AT_SECURE), where GOTRACEBACK is forced to none and a crash prints no
// goroutine trace (no stack contents, no registers) whatever the user set;
// the same binary run without the setuid bit prints the trace asked for.
func TestGoSecureMode(t *testing.T) {
	t.Parallel()
	setup(t)
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go on PATH")
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		must(t, os.Chmod(d, 0o755))
	}
	src := filepath.Join(dir, "main.go")
	must(t, os.WriteFile(src, []byte("package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tfmt.Println(\"GOTRACEBACK=\" + os.Getenv(\"GOTRACEBACK\"))\n\tpanic(\"secret\")\n}\n"), 0o644))
	prog := filepath.Join(dir, "crash")
	build := exec.Command(gobin, "build", "-o", prog, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func() string {
		c := exec.Command("setpriv", "--reuid="+strconv.Itoa(userA), "--regid="+strconv.Itoa(userA), "--clear-groups", prog)
		c.Env = []string{"GOTRACEBACK=crash", "PATH=/usr/bin:/bin"}
		out, _ := c.CombinedOutput()
		return string(out)
	}
	if out := run(); !strings.Contains(out, "goroutine 1") {
		t.Fatalf("without setuid: no goroutine trace:\n%s", out)
	}
	must(t, os.Chmod(prog, os.ModeSetuid|0o755))
	if out := run(); strings.Contains(out, "goroutine") || !strings.Contains(out, "GOTRACEBACK=none") {
		t.Errorf("setuid: the runtime did not force GOTRACEBACK=none:\n%s", out)
	}
}
