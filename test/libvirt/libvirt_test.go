// Package libvirt runs kvmnet under a real libvirtd (Debian's
// libvirt-daemon-system), as libvirt users meet it: the ethernet <script>
// recipe and the hook for <interface type='bridge'>. One libvirtd serves the
// package; it runs in the hypervisor namespace of a test world
// (scripts/world.sh: an outside host 203.0.113.1 behind an uplink) and in a
// private mount namespace (testdata/libvirtd.sh), so that the machine's own
// /run/libvirt, /etc/libvirt and /var/lib/libvirt are never touched. Guests
// are the project's test guest (scripts/guest), booted by direct kernel boot
// under TCG, reporting on a serial console written to a file.
package libvirt

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// bin holds the binaries TestMain builds.
var bin string

func TestMain(m *testing.M) { testhost.Main(m, &bin) }

const (
	outsideIP = "203.0.113.1"
	uplinkIP  = "203.0.113.2"
	toOutside = "tcp:" + outsideIP + ":80"
	// guestWait bounds a guest's boot and checks: ~5 s on an idle machine
	// under TCG, far more when the two cores are shared.
	guestWait = 5 * time.Minute
)

// lab is the test world with its libvirtd.
type lab struct {
	t         *testing.T
	out, host *testns.NS
	dir       string // the test's files: config, leases, sockets, serial logs
	uri       string // virsh -c
	guest     string // vmlinuz and initrd.img
	before    snapshot
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// newLab makes the world and starts virtlogd and libvirtd in its host
// namespace, with the hook (bin/kvmnet-libvirt-hook) as
// /etc/libvirt/hooks/qemu.d/kvmnet and a kvmnet.toml that keeps leases in
// the test's directory.
func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network and mount namespaces, libvirtd")
	}
	for _, p := range []string{"libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "unshare", "nsenter", "busybox"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s on PATH: run `make deps` (libvirt-daemon-system, qemu-system-x86)", p)
		}
	}
	root := repoRoot(t)
	out, err := exec.Command(filepath.Join(root, "scripts", "guest", "build.sh")).CombinedOutput()
	if err != nil {
		t.Fatalf("build the test guest: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	l := &lab{t: t, out: testns.New(t), host: testns.New(t), dir: t.TempDir(), guest: lines[len(lines)-1]}
	world := filepath.Join(root, "scripts", "world.sh")
	if out, err := exec.Command(world, "up", l.out.Name, l.host.Name).CombinedOutput(); err != nil {
		t.Fatalf("world.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(world, "down", l.out.Name, l.host.Name).CombinedOutput(); err != nil {
			t.Errorf("world.sh down: %v\n%s", err, out)
		}
	})
	// Every real host has iptables' filter and nat tables; make them now, so
	// that "as before" compares rules, not tables iptables made on first use.
	l.host.MustRun("iptables", "-P", "FORWARD", "ACCEPT")
	l.host.MustRun("iptables", "-t", "nat", "-P", "POSTROUTING", "ACCEPT")
	conf := fmt.Sprintf("lease_dir = %q\n", filepath.Join(l.dir, "leases"))
	if err := os.WriteFile(filepath.Join(l.dir, "kvmnet.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	l.uri = "qemu:///system?socket=" + filepath.Join(l.dir, "sock", "libvirt-sock")
	script := filepath.Join(root, "test", "libvirt", "testdata", "libvirtd.sh")
	t.Cleanup(l.stop)
	l.host.MustRun("unshare", "-m", "--propagation", "private", script, l.dir, filepath.Join(bin, "kvmnet-libvirt-hook"))
	l.waitLibvirtd()
	l.before = l.snap()
	return l
}

// stop destroys what domains are left and stops libvirtd and virtlogd.
func (l *lab) stop() {
	if names, err := l.virsh("list", "--name"); err == nil {
		for _, n := range strings.Fields(names) {
			_, _ = l.virsh("destroy", n)
		}
	}
	for _, d := range []string{"libvirtd", "virtlogd"} {
		if pid, ok := l.pid(d); ok {
			_ = exec.Command("kill", strconv.Itoa(pid)).Run()
			waitGone(pid, 10*time.Second)
		}
	}
}

// restartLibvirtd stops libvirtd and starts it again in the same namespaces
// (those virtlogd keeps), under the running domains.
func (l *lab) restartLibvirtd() {
	l.t.Helper()
	pid, ok := l.pid("libvirtd")
	logd, ok2 := l.pid("virtlogd")
	if !ok || !ok2 {
		l.t.Fatal("no libvirtd or virtlogd pid")
	}
	_ = exec.Command("kill", strconv.Itoa(pid)).Run()
	waitGone(pid, 30*time.Second)
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(logd), "-m", "-n", "--",
		"libvirtd", "-d", "-p", filepath.Join(l.dir, "libvirtd.pid")).CombinedOutput(); err != nil {
		l.t.Fatalf("start libvirtd again: %v\n%s", err, out)
	}
	l.waitLibvirtd()
}

// waitLibvirtd waits until libvirtd answers.
func (l *lab) waitLibvirtd() {
	l.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := l.virsh("version")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(l.dir, "libvirtd.log"))
			l.t.Fatalf("libvirtd did not answer: %v\nits log:\n%s", err, b)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// pid returns the pid of libvirtd or virtlogd, from its pid file.
func (l *lab) pid(daemon string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(l.dir, daemon+".pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil
}

// waitGone waits until pid has exited (a zombie counts as gone: PID 1 here
// does not reap orphans).
func waitGone(pid int, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if !alive(pid) {
			return
		}
	}
}

func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && !strings.HasPrefix(string(stat[i:]), ") Z")
}

func (l *lab) virsh(args ...string) (string, error) {
	out, err := exec.Command("virsh", append([]string{"-q", "-c", l.uri}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// inLibvirt runs argv in libvirtd's namespaces (its /etc, /var/log/libvirt).
func (l *lab) inLibvirt(argv ...string) string {
	pid, ok := l.pid("libvirtd")
	if !ok {
		l.t.Fatal("no libvirtd pid")
	}
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-m", "-n", "--"}, argv...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s in libvirtd's namespaces: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// kvmnet runs the operator tool in the host namespace with the test's configuration.
func (l *lab) kvmnet(args ...string) (string, error) {
	o, e, err := l.host.Run(append([]string{"env", "KVMNET_CONFIG=" + filepath.Join(l.dir, "kvmnet.toml"),
		filepath.Join(bin, "kvmnet")}, args...)...)
	return o + e, err
}

// guest is a domain booting the test guest.
type guest struct {
	name  string
	iface string   // the <interface> elements
	check []string // kvmnet.check
	acpi  bool     // ACPI, which PCI hotplug on the pc machine needs
}

var macSeq int

// mac returns a locally administered MAC of its own for each interface.
func mac() string {
	macSeq++
	return fmt.Sprintf("52:54:00:7e:%02x:%02x", os.Getpid()&0xff, macSeq)
}

// bridgeIface is an <interface type='bridge'> on br, as virt-manager writes it.
func bridgeIface(br string) string {
	return fmt.Sprintf(`<interface type='bridge'><source bridge='%s'/><mac address='%s'/><model type='virtio'/></interface>`, br, mac())
}

// scriptIface is the README's ethernet recipe with kvmnet's NAT helpers.
func scriptIface(tap string) string {
	return fmt.Sprintf(`<interface type='ethernet'><target dev='%s'/><mac address='%s'/><model type='virtio'/>`+
		`<script path='%s'/><downscript path='%s'/></interface>`,
		tap, mac(), filepath.Join(bin, "kvmnet-natup"), filepath.Join(bin, "kvmnet-natdown"))
}

// start defines and starts a transient domain for g.
func (l *lab) start(g guest) {
	l.t.Helper()
	if out, err := l.create(g); err != nil {
		l.t.Fatalf("%v\n%s", err, out)
	}
}

// create is start, returning virsh's error.
func (l *lab) create(g guest) (string, error) {
	cmdline := []string{"console=ttyS0", "quiet", "panic=-1", "kvmnet.name=" + g.name, "kvmnet.net=dhcp",
		"kvmnet.wait=240", "kvmnet.hold=900", "kvmnet.timeout=1200"}
	if len(g.check) > 0 {
		cmdline = append(cmdline, "kvmnet.check="+strings.Join(g.check, ","))
	}
	features := ""
	if g.acpi {
		features = "<features><acpi/></features>"
	}
	xml := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel><initrd>%s</initrd><cmdline>%s</cmdline></os>
  %s
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    %s
    <serial type='file'><source path='%s'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`, g.name, filepath.Join(l.guest, "vmlinuz"), filepath.Join(l.guest, "initrd.img"),
		strings.Join(cmdline, " "), features, g.iface, l.serial(g.name))
	path := filepath.Join(l.dir, g.name+".xml")
	if err := os.WriteFile(path, []byte(xml), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return l.virsh("create", path)
}

func (l *lab) serial(name string) string { return filepath.Join(l.dir, name+".serial") }

// report waits for the guest's "KVMNET done" line and returns its KVMNET
// lines, without the prefix, keyed by their first word (the last of each).
func (l *lab) report(name string) map[string]string {
	l.t.Helper()
	deadline := time.Now().Add(guestWait)
	for {
		b, _ := os.ReadFile(l.serial(name))
		lines := map[string]string{}
		var all []string
		for _, ln := range strings.Split(string(b), "\n") {
			_, rest, ok := strings.Cut(strings.TrimRight(ln, "\r"), "KVMNET ")
			if !ok {
				continue
			}
			all = append(all, rest)
			kind, _, _ := strings.Cut(rest, " ")
			lines[kind] = rest
			if kind == "ok" || kind == "fail" {
				lines[rest] = rest
			}
		}
		if _, done := lines["done"]; done {
			l.t.Logf("guest %s:\n    %s", name, strings.Join(all, "\n    "))
			if slices.ContainsFunc(all, func(ln string) bool { return strings.HasPrefix(ln, "fail dhcp") }) {
				l.t.Logf("guest %s got no lease; the DHCP/DNS daemons' logs:\n%s", name, l.host.DaemonLogs())
			}
			return lines
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("guest %s did not finish its checks in %s; its console:\n%s", name, guestWait, b)
		}
		time.Sleep(time.Second)
	}
}

// leased checks a guest's report: a lease in the default network, every
// check passed, the outside reached through the masquerade. It returns the
// guest's address.
func leased(t *testing.T, name string, r map[string]string) string {
	t.Helper()
	f := map[string]string{}
	for _, kv := range strings.Fields(r["lease"]) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			f[k] = v
		}
	}
	if !strings.HasPrefix(f["ip"], "192.168.100.") || f["router"] != "192.168.100.1" || f["dns"] != "192.168.100.1" {
		t.Errorf("guest %s: lease %q, want an address in 192.168.100.0/24 with router and dns 192.168.100.1", name, r["lease"])
	}
	if !strings.HasSuffix(r["done"], " fail=0") {
		t.Errorf("guest %s: %s", name, r["done"])
	}
	if want := "ok tcp " + outsideIP + ":80 kvmnet-outside saw " + uplinkIP; r[want] == "" {
		t.Errorf("guest %s did not reach the outside host through the masquerade (want %q)", name, want)
	}
	return strings.TrimSuffix(f["ip"], "/24")
}

// destroy stops a domain the way `virsh destroy` does (QEMU killed, libvirt
// runs its stop and release hooks).
func (l *lab) destroy(name string) {
	l.t.Helper()
	if out, err := l.virsh("destroy", name); err != nil {
		l.t.Fatalf("%v\n%s", err, out)
	}
}

// status returns `kvmnet status --json` of the default network.
func (l *lab) status() statusNet {
	l.t.Helper()
	out, err := l.kvmnet("status", "default", "--json")
	if err != nil {
		l.t.Fatalf("kvmnet status: %v\n%s", err, out)
	}
	var s struct{ Networks []statusNet }
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s.Networks) != 1 {
		l.t.Fatalf("kvmnet status --json: %v\n%s", err, out)
	}
	return s.Networks[0]
}

type statusNet struct {
	Up    bool
	Ports []struct {
		Name, Domain string
		KVMnet       bool
		Attached     bool
		Guard        *struct{ MAC string }
	}
	Domains []statusDomain
}

type statusDomain struct {
	Name string
	Taps []string
}

// domainTaps maps each domain name that status shows beside a port to its attached taps.
func (s statusNet) domainTaps() map[string][]string {
	m := map[string][]string{}
	for _, p := range s.Ports {
		if p.Domain != "" && p.Attached && p.KVMnet {
			m[p.Domain] = append(m[p.Domain], p.Name)
		}
	}
	return m
}

// snapshot is what kvmnet may change in the host namespace and must give back.
type snapshot struct{ links, iptables, forward, state, procs string }

func (l *lab) snap() snapshot {
	var links []string
	for _, ln := range strings.Split(strings.TrimSpace(l.host.MustRun("ip", "-br", "link")), "\n") {
		if f := strings.Fields(ln); len(f) > 0 {
			links = append(links, f[0])
		}
	}
	sort.Strings(links)
	return snapshot{
		links:    strings.Join(links, " "),
		iptables: l.host.IptablesSave(),
		forward:  l.host.Sysctl("net.ipv4.ip_forward"),
		state:    strings.Join(l.stateFiles(), " "),
		procs:    l.procs(),
	}
}

// stateFiles lists kvmnet's state files for the host namespace, but its locks.
func (l *lab) stateFiles() []string {
	var left []string
	err := l.host.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		ents, err := os.ReadDir(d.Path)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".lock") {
				left = append(left, e.Name())
			}
		}
		return err
	})
	if err != nil {
		l.t.Errorf("read kvmnet's state: %v", err)
	}
	return left
}

// procs lists the live programs of the host namespace but QEMU, whose exit
// libvirt reports before the process is reaped.
func (l *lab) procs() string {
	var names []string
	for _, p := range strings.Fields(l.host.MustRun("ip", "netns", "pids", l.host.Name)) {
		b, err := os.ReadFile("/proc/" + p + "/comm")
		pid, _ := strconv.Atoi(p)
		if err != nil || !alive(pid) {
			continue
		}
		if name := strings.TrimSpace(string(b)); !strings.HasPrefix(name, "qemu-system") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// restored fails the test unless the host namespace is as newLab found it,
// giving kvmnet's teardown a few seconds.
func (l *lab) restored() {
	l.t.Helper()
	var now snapshot
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if now = l.snap(); now == l.before || time.Now().After(end) {
			break
		}
	}
	diff := func(what, a, b string) {
		if a != b {
			l.t.Errorf("%s not as before:\nbefore: %s\nafter:  %s", what, a, b)
		}
	}
	diff("links", l.before.links, now.links)
	diff("iptables-save", l.before.iptables, now.iptables)
	diff("ip_forward", l.before.forward, now.forward)
	diff("kvmnet's state files", l.before.state, now.state)
	diff("processes", l.before.procs, now.procs)
}

// stillUp checks that the default network is up with a domain's tap on it.
func (l *lab) stillUp(tap string) {
	l.t.Helper()
	if m := l.host.MustRun("ip", "-o", "link", "show", tap); !strings.Contains(m, "master br0") {
		l.t.Errorf("%s no longer on br0: %s", tap, m)
	}
	if s := l.status(); !s.Up {
		l.t.Errorf("network default is down while a domain still uses it")
	}
}

func TestLibvirt(t *testing.T) {
	l := newLab(t)
	t.Run("ethernet scripts", func(t *testing.T) { ethernetScripts(l.with(t)) })
	t.Run("hook", func(t *testing.T) { hook(l.with(t)) })
	t.Run("hand-made bridges", func(t *testing.T) { handMade(l.with(t)) })
	t.Run("prepare fails", func(t *testing.T) { prepareFails(l.with(t)) })
	t.Run("script fails", func(t *testing.T) { scriptFails(l.with(t)) })
	t.Run("hook guards", func(t *testing.T) { hookGuards(l.with(t)) })
	t.Run("hot-plugged NIC", func(t *testing.T) { hotplugged(l.with(t)) })
}

// with returns l reporting to subtest t.
func (l *lab) with(t *testing.T) *lab {
	c := *l
	c.t = t
	return &c
}

// ethernetScripts: the README's <interface type='ethernet'> recipe with the
// NAT helpers: two domains get leases and each other's names, the network
// outlives the first and goes with the last.
func ethernetScripts(l *lab) {
	t := l.t
	l.start(guest{name: "e1", iface: scriptIface("kv-e1"), check: []string{toOutside, "dns:e2"}})
	l.start(guest{name: "e2", iface: scriptIface("kv-e2"), check: []string{toOutside, "dns:e1"}})
	r1, r2 := l.report("e1"), l.report("e2")
	ip1, ip2 := leased(t, "e1", r1), leased(t, "e2", r2)
	if ip1 == ip2 {
		t.Errorf("both guests got %s", ip1)
	}
	if got := r1["ok dns e2 "+ip2]; got == "" {
		t.Errorf("e1 did not resolve e2 to %s: %q", ip2, r1["ok"])
	}
	if got := r2["ok dns e1 "+ip1]; got == "" {
		t.Errorf("e2 did not resolve e1 to %s: %q", ip1, r2["ok"])
	}
	// What the README says of the recipe: libvirt keeps the tap's name and
	// marks the domain as running scripts.
	if log := l.inLibvirt("cat", "/var/log/libvirt/qemu/e1.log"); !strings.Contains(log, "tainted: shell-scripts") {
		t.Errorf("e1's libvirt log has no 'tainted: shell-scripts':\n%s", log)
	}
	l.destroy("e1")
	l.stillUp("kv-e2")
	l.destroy("e2")
	l.restored()
}

// hook: virt-manager's <interface type='bridge'><source bridge='br0'/> on the
// zero-config default network, set up and torn down by the hook.
func hook(l *lab) {
	t := l.t
	l.start(guest{name: "b1", iface: bridgeIface("br0"), check: []string{toOutside, "dns:b2"}})
	l.start(guest{name: "b2", iface: bridgeIface("br0"), check: []string{toOutside, "dns:b1"}})
	r1, r2 := l.report("b1"), l.report("b2")
	if ip1, ip2 := leased(t, "b1", r1), leased(t, "b2", r2); ip1 == ip2 {
		t.Errorf("both guests got %s", ip1)
	}
	taps := l.status().domainTaps()
	if len(taps["b1"]) != 1 || len(taps["b2"]) != 1 {
		out, _ := l.kvmnet("status")
		t.Fatalf("status names the domains' taps %v, want one each for b1 and b2:\n%s", taps, out)
	}
	if out, err := l.kvmnet("status"); err == nil {
		t.Logf("kvmnet status:\n%s", out)
	}
	// The hook put the taps in the guard's group: the guard learned each
	// guest's MAC there, and the guests got leases through it all the same.
	for _, p := range l.status().Ports {
		if p.Domain != "" && (p.Guard == nil || p.Guard.MAC == "") {
			t.Errorf("the guard learned no MAC on %s (domain %s): its tap is not guarded", p.Name, p.Domain)
		}
	}
	// The domains' taps count as the network's users: gc leaves it alone.
	if out, err := l.kvmnet("gc"); err != nil {
		t.Errorf("kvmnet gc: %v\n%s", err, out)
	}
	l.stillUp(taps["b2"][0])
	if log := l.inLibvirt("cat", "/var/log/libvirt/qemu/b1.log"); strings.Contains(log, "shell-scripts") {
		t.Errorf("b1, which runs no script, is tainted:\n%s", log)
	}
	l.destroy("b1")
	l.stillUp(taps["b2"][0])
	if s := l.status(); len(s.Domains) != 1 || s.Domains[0].Name != "b2" {
		t.Errorf("domains on the network after b1's end: %+v, want b2 alone", s.Domains)
	}
	// libvirtd restarts (an upgrade does) under b2: the hook's `reconnect`
	// keeps it recorded, and its end still takes the network down.
	l.restartLibvirtd()
	l.stillUp(taps["b2"][0])
	if s := l.status(); len(s.Domains) != 1 || s.Domains[0].Name != "b2" || len(s.Domains[0].Taps) != 1 {
		t.Errorf("domains on the network after libvirtd's restart: %+v, want b2 with its tap", s.Domains)
	}
	l.destroy("b2")
	l.restored()
}

// handMade: a domain on bridges someone made by hand (one of them br0, the
// default network's name) starts, and the hook leaves both alone.
func handMade(l *lab) {
	t := l.t
	for _, br := range []string{"br0", "br-hand"} {
		l.host.MustRun("ip", "link", "add", br, "type", "bridge")
		l.host.MustRun("ip", "link", "set", br, "up")
	}
	before := l.snap()
	l.start(guest{name: "h1", iface: bridgeIface("br-hand") + bridgeIface("br0")})
	if files := l.stateFiles(); len(files) != 0 {
		t.Errorf("the hook recorded something for a domain on hand-made bridges: %v", files)
	}
	if addrs := l.host.MustRun("ip", "-br", "addr", "show", "br0"); strings.Contains(addrs, "192.168.100.1") {
		t.Errorf("the hook took over the hand-made br0: %s", addrs)
	}
	if got := l.host.IptablesSave(); got != before.iptables {
		t.Errorf("rules changed for a domain on hand-made bridges:\n%s", got)
	}
	l.destroy("h1")
	for _, br := range []string{"br0", "br-hand"} {
		if !strings.Contains(l.host.MustRun("ip", "-br", "link"), br+" ") {
			t.Errorf("hand-made %s is gone", br)
		}
		l.host.MustRun("ip", "link", "del", br)
	}
	l.restored()
}

// prepareFails: when the network cannot come up, libvirt refuses to start the
// domain with the hook's one line, and nothing is left.
func prepareFails(l *lab) {
	t := l.t
	// Another interface of the host already has the default network's subnet.
	l.host.MustRun("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
	l.host.MustRun("ip", "addr", "add", "192.168.100.50/24", "dev", "lan0")
	before := l.snap()
	out, err := l.create(guest{name: "x1", iface: bridgeIface("br0")})
	if err == nil {
		l.destroy("x1")
		t.Fatalf("x1 started on an overlapping subnet:\n%s", out)
	}
	t.Logf("virsh create:\n%s", out)
	want := "kvmnet-libvirt-hook: network default for domain x1: add 192.168.100.1/24 to br0: subnet 192.168.100.0/24 overlaps"
	if !strings.Contains(out, want) || !strings.Contains(out, "unexpected exit status 1") {
		t.Errorf("virsh create said %q, want libvirt's hook failure with %q", out, want)
	}
	if now := l.snap(); now != before {
		t.Errorf("a failed prepare left something:\nbefore: %+v\nafter:  %+v", before, now)
	}
	l.host.MustRun("ip", "link", "del", "lan0")
	l.restored()
}

// scriptFails: a helper that fails as an ethernet interface's script stops
// the domain's start; libvirt shows the helper's line inside its own error.
func scriptFails(l *lab) {
	t := l.t
	link := filepath.Join(l.dir, "kvmnet-natup@lab")
	if err := os.Symlink(filepath.Join(bin, "kvmnet-natup"), link); err != nil {
		t.Fatal(err)
	}
	iface := fmt.Sprintf(`<interface type='ethernet'><target dev='kv-web1'/><model type='virtio'/><script path='%s'/></interface>`, link)
	out, err := l.create(guest{name: "x2", iface: iface})
	if err == nil {
		l.destroy("x2")
		t.Fatalf("x2 started with a script for an undefined network:\n%s", out)
	}
	t.Logf("virsh create:\n%s", out)
	want := "unexpected exit status 2: kvmnet-natup: network lab: not defined in /etc/kvmnet/kvmnet.toml"
	if !strings.Contains(out, "Child process (") || !strings.Contains(out, want) {
		t.Errorf("virsh create said %q, want libvirt's child process error ending in %q", out, want)
	}
	l.restored()
}
