// Package e2e boots real guests (scripts/guest, under QEMU with TCG) on
// networks that the kvmnet helpers in bin/ set up, inside a test world of
// network namespaces (scripts/world.sh): an "outside" host 203.0.113.1 and a
// hypervisor namespace with uplink 203.0.113.2 where QEMU runs. Nothing here
// touches the machine's own namespace.
//
// Needs root, qemu-system-x86_64, busybox and the helpers (`make build`, or
// KVMNET_BIN=dir); skips with the reason otherwise.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

const (
	outsideIP = "203.0.113.1"
	uplinkIP  = "203.0.113.2"
)

var (
	setupOnce sync.Once
	skipWhy   string // why every test skips, when it does
	failWhy   string // why every test fails, when the setup broke
	repoRoot  string
	binDir    string
	guestDir  string // vmlinuz and initrd.img
)

// setup checks the prerequisites once and builds (or finds cached) the guest.
func setup(t *testing.T) {
	t.Helper()
	setupOnce.Do(func() {
		wd, _ := os.Getwd()
		repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
		binDir = os.Getenv("KVMNET_BIN")
		if binDir == "" {
			binDir = filepath.Join(repoRoot, "bin")
		}
		binDir, _ = filepath.Abs(binDir)
		if os.Geteuid() != 0 {
			skipWhy = "end-to-end tests need root (network namespaces, bridges, QEMU taps): run `sudo make test`"
			return
		}
		for _, h := range []string{"ifup", "ifdown", "natup", "natdown"} {
			if _, err := os.Stat(filepath.Join(binDir, "kvmnet-"+h)); err != nil {
				skipWhy = fmt.Sprintf("no helper %s/kvmnet-%s: run `make build` (or set KVMNET_BIN)", binDir, h)
				return
			}
		}
		for _, p := range []string{"qemu-system-x86_64", "busybox", "iptables-save", "ip"} {
			if _, err := exec.LookPath(p); err != nil {
				skipWhy = fmt.Sprintf("no %s on PATH: run `make deps`", p)
				return
			}
		}
		out, err := exec.Command(filepath.Join(repoRoot, "scripts", "guest", "build.sh")).CombinedOutput()
		if err != nil {
			failWhy = fmt.Sprintf("building the test guest: %v\n%s", err, out)
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		guestDir = lines[len(lines)-1]
	})
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	if failWhy != "" {
		t.Fatal(failWhy)
	}
}

// backends are the firewall backends every test with booted guests runs against.
var backends = []string{"nftables", "iptables"}

// matrix runs test once per firewall backend, as a subtest named after it.
func matrix(t *testing.T, test func(t *testing.T, fw string)) {
	for _, fw := range backends {
		t.Run(fw, func(t *testing.T) { test(t, fw) })
	}
}

// fwConf is the line of a test's configuration that picks backend fw.
func fwConf(fw string) string { return fmt.Sprintf("firewall = %q\n", fw) }

// world is one test's namespaces: out (203.0.113.1, HTTP) and host (QEMU, helpers).
type world struct {
	t      *testing.T
	out    *testns.NS
	host   *testns.NS
	dir    string   // the test's own files: config, helper links, leases
	env    []string // QEMU's (so the helpers') environment
	conf   string   // KVMNET_CONFIG
	before snapshot
}

// newWorld makes the namespaces with scripts/world.sh, gives the helpers a
// config file of the test's own (extra is appended to it: [network.X] tables),
// lets prep change the host namespace (e.g. iptables -P FORWARD DROP), then
// records the host namespace's state, which every guest's exit must restore.
func newWorld(t *testing.T, extra string, prep ...[]string) *world {
	t.Helper()
	setup(t)
	w := &world{t: t, out: testns.New(t), host: testns.New(t), dir: t.TempDir()}
	script := filepath.Join(repoRoot, "scripts", "world.sh")
	if out, err := exec.Command(script, "up", w.out.Name, w.host.Name).CombinedOutput(); err != nil {
		t.Fatalf("world.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() { // before testns's, which then removes kvmnet's state directory
		if out, err := exec.Command(script, "down", w.out.Name, w.host.Name).CombinedOutput(); err != nil {
			t.Errorf("world.sh down: %v\n%s", err, out)
		}
	})
	// Leases go to the test's directory, not /var/lib/kvmnet; networks stay zero-config.
	w.conf = filepath.Join(w.dir, "kvmnet.toml")
	conf := fmt.Sprintf("lease_dir = %q\n%s", filepath.Join(w.dir, "leases"), extra)
	if err := os.WriteFile(w.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = append(os.Environ(), "KVMNET_CONFIG="+w.conf)
	for _, argv := range prep {
		w.host.MustRun(argv...)
	}
	w.before = w.snap()
	return w
}

// helper returns the path QEMU should run for verb (natup, natdown, ifup, ifdown)
// on network (""=default): bin/kvmnet-VERB, or a link kvmnet-VERB@NETWORK to it.
func (w *world) helper(verb, network string) string {
	target := filepath.Join(binDir, "kvmnet-"+verb)
	if network == "" {
		return target
	}
	link := filepath.Join(w.dir, "kvmnet-"+verb+"@"+network)
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(target, link); err != nil {
			w.t.Fatal(err)
		}
	}
	return link
}

// run runs argv in the host namespace with the test's environment.
func (w *world) run(argv ...string) (string, error) {
	c := w.host.Cmd(argv...)
	c.Env = w.env
	out, err := c.CombinedOutput()
	return string(out), err
}

// seen returns the source addresses the outside server saw, in order.
func (w *world) seen() []string {
	b, err := os.ReadFile(filepath.Join("/run/kvmnet-world", w.out.Name, "outside.log"))
	if err != nil {
		w.t.Fatalf("outside log: %v", err)
	}
	return strings.Fields(string(b))
}

// snapshot is what a helper may change in the host namespace and must give back.
type snapshot struct {
	links, addrs, routes, rules, iptables, forward, procs string
	nft                                                   string // kvmnet's nftables table, "" when there is none
}

var spaces = regexp.MustCompile(`[ \t]+`)

func (w *world) snap() snapshot {
	w.t.Helper()
	sorted := func(argv ...string) string {
		lines := strings.Split(strings.TrimSpace(w.host.MustRun(argv...)), "\n")
		for i := range lines {
			lines[i] = spaces.ReplaceAllString(strings.TrimSpace(lines[i]), " ")
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	return snapshot{
		links:    sorted("ip", "-br", "link"),
		addrs:    sorted("ip", "-br", "addr"),
		routes:   sorted("ip", "route", "show", "table", "all"),
		rules:    sorted("ip", "rule"),
		iptables: normIptables(w.host.IptablesSave()),
		forward:  w.host.Sysctl("net.ipv4.ip_forward") + " " + w.host.Sysctl("net.ipv4.conf.all.forwarding"),
		procs:    w.procs(),
		nft:      w.nftTable(),
	}
}

// nftTable is `nft -s list table inet kvmnet`, "" when there is none.
func (w *world) nftTable() string {
	out, _, err := w.host.Run("nft", "-s", "list", "table", "inet", "kvmnet")
	if err != nil {
		return ""
	}
	return out
}

// procs lists the programs running in the host namespace (the world's HTTP
// server, and any daemon a helper left behind).
func (w *world) procs() string {
	pids, err := exec.Command("ip", "netns", "pids", w.host.Name).Output()
	if err != nil {
		return "?"
	}
	var names []string
	for _, p := range strings.Fields(string(pids)) {
		b, err := os.ReadFile("/proc/" + p + "/cmdline")
		if err != nil {
			continue // gone meanwhile
		}
		names = append(names, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	}
	sort.Strings(names)
	return strings.Join(names, "\n")
}

// normIptables drops tables that hold no rules, no chains of their own and
// only ACCEPT policies: iptables-nft makes them on first use and they filter
// nothing, so a table that is there empty equals one that is not there.
func normIptables(s string) string {
	var out []string
	var table []string
	empty := true
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table, empty = []string{l}, true
		case l == "COMMIT":
			table = append(table, l)
			if !empty {
				out = append(out, table...)
			}
			table = nil
		case strings.HasPrefix(l, ":"):
			table = append(table, l)
			if f := strings.Fields(l); len(f) < 2 || f[1] != "ACCEPT" {
				empty = false
			}
		case l == "":
		default:
			table = append(table, l)
			empty = false
		}
	}
	return strings.Join(out, "\n")
}

// checkRestored fails the test unless the host namespace is as newWorld found
// it. It waits for a last down's background teardown (testhost.Settle), and
// gives the rest (daemons exiting, gc after a killed QEMU) a few seconds.
func (w *world) checkRestored() {
	w.t.Helper()
	testhost.Settle(w.t, w.host)
	var now snapshot
	deadline := time.Now().Add(8 * time.Second)
	for {
		now = w.snap()
		if now == w.before || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	diff := func(what, a, b string) {
		if a != b {
			w.t.Errorf("host namespace %s not restored after the guests exited:\nbefore:\n%s\nafter:\n%s", what, indent(a), indent(b))
		}
	}
	diff("links", w.before.links, now.links)
	diff("addresses", w.before.addrs, now.addrs)
	diff("routes", w.before.routes, now.routes)
	diff("ip rules", w.before.rules, now.rules)
	diff("iptables-save", w.before.iptables, now.iptables)
	diff("nft list table inet kvmnet", w.before.nft, now.nft)
	diff("ip_forward (ipv4.ip_forward, conf.all.forwarding)", w.before.forward, now.forward)
	diff("processes", w.before.procs, now.procs)
}

func indent(s string) string {
	if s == "" {
		return "    (nothing)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// qemuSlots bounds how many guests boot at once: TCG wants about a core each.
var qemuSlots = make(chan struct{}, max(2, runtime.NumCPU()))

func acquire(n int) func() {
	// Take n slots at once (under a lock), so that two groups never each hold
	// half of what they need.
	acquireMu.Lock()
	for i := 0; i < n; i++ {
		qemuSlots <- struct{}{}
	}
	acquireMu.Unlock()
	return func() {
		for i := 0; i < n; i++ {
			<-qemuSlots
		}
	}
}

var acquireMu sync.Mutex
