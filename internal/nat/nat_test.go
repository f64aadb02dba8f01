package nat

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-iptables/iptables"

	"github.com/kvmnet/kvmnet/internal/testns"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func init() {
	// Keep the main goroutine on the main thread. testns.NS.Do locks a
	// goroutine into a namespace and lets the thread die with it; were that
	// goroutine on the main thread, which Go never lets die, the test process
	// would stay in the namespace and testns' cleanup would kill it.
	runtime.LockOSThread()
}

// fixtures are the networks the goldens show, by golden name.
var fixtures = []struct {
	golden string
	n      Network
}{
	{"nat", Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Subnet: netip.MustParsePrefix("192.168.100.0/24"), Gateway: netip.MustParseAddr("192.168.100.1")}},
	{"nat-services", Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Subnet: netip.MustParsePrefix("192.168.100.0/24"), Gateway: netip.MustParseAddr("192.168.100.1"), Services: true}},
	{"hostonly-services", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Subnet: netip.MustParsePrefix("192.168.101.0/24"), Gateway: netip.MustParseAddr("192.168.101.1"), Services: true}},
	{"hostonly", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Gateway: netip.MustParseAddr("192.168.101.1")}},
	{"isolated", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated}},
	{"nat-forwards", withForwards(Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Subnet: netip.MustParsePrefix("192.168.100.0/24"), Gateway: netip.MustParseAddr("192.168.100.1"), Services: true})},
	{"nat-forwards-no-services", withForwards(Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Subnet: netip.MustParsePrefix("192.168.100.0/24"), Gateway: netip.MustParseAddr("192.168.100.1")})},
	{"hostonly-allow-from", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Gateway: netip.MustParseAddr("192.168.101.1"), AllowFrom: []string{"kvmbr0", "virbr0"}}},
	{"isolated-vxlan", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated, Overlay: testOverlay}},
	{"hostonly-services-vxlan", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Subnet: netip.MustParsePrefix("192.168.101.0/24"), Gateway: netip.MustParseAddr("192.168.101.1"), Services: true, Overlay: testOverlay}},
	{"isolated-evpn", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated, Overlay: &Overlay{VNI: 4242, Port: 4789, EVPN: true, Peers: testOverlay.Peers}}},
}

// testOverlay is a VXLAN with two peers on a port other than the IANA one.
var testOverlay = &Overlay{VNI: 4242, Port: 8472, Peers: []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")}}

// withForwards gives n a tcp forward on every host address, a udp range
// mapped to another range on one host address, and a range onto the same ports.
func withForwards(n Network) Network {
	g := n.Subnet.Addr().Next().Next().Next().Next().Next() // .5
	n.Forwards = []PortForward{
		{Proto: "tcp", First: 8080, Last: 8080, Guest: g, GuestPort: 80},
		{Proto: "udp", HostIP: netip.MustParseAddr("203.0.113.2"), First: 5000, Last: 5002, Guest: g, GuestPort: 6000},
		{Proto: "tcp", First: 9000, Last: 9009, Guest: g.Next(), GuestPort: 9000},
	}
	return n
}

var (
	netA = Network{Name: "a", Bridge: "kvmbr0", Mode: NAT, Subnet: netip.MustParsePrefix("10.10.0.0/24"), Gateway: netip.MustParseAddr("10.10.0.1"), Services: true}
	netB = Network{Name: "b-2", Bridge: "kvmbr1", Mode: HostOnly, Subnet: netip.MustParsePrefix("10.20.0.0/24"), Gateway: netip.MustParseAddr("10.20.0.1")}
)

// do runs f inside ns with a Firewall made there, failing t on error. f must
// report failure by returning it: t.Fatal or t.Skip inside would end the
// goroutine that testns.NS.Do waits for, and hang the test.
func do(t testing.TB, ns *testns.NS, f func(fw *Firewall) error) {
	t.Helper()
	err := ns.Do(func() error {
		fw, err := New()
		if err != nil {
			return err
		}
		return f(fw)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ensure runs EnsureGen of n in ns.
func ensure(t testing.TB, ns *testns.NS, n Network) Result {
	t.Helper()
	var r Result
	do(t, ns, func(fw *Firewall) (err error) {
		r, err = fw.EnsureGen(n)
		return err
	})
	return r
}

func remove(t testing.TB, ns *testns.NS, n Network) {
	t.Helper()
	do(t, ns, func(fw *Firewall) error { return fw.Remove(n) })
}

func generation(t testing.TB, ns *testns.NS) uint32 {
	t.Helper()
	var g uint32
	if err := ns.Do(func() (err error) { g, err = Generation(); return err }); err != nil {
		t.Fatal(err)
	}
	return g
}

// foreign adds what Docker and libvirt leave on a host, including a FORWARD
// DROP policy, so that tests show kvmnet works beside them and never touches them.
func foreign(t testing.TB, ns *testns.NS) {
	t.Helper()
	for _, c := range []string{
		"-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
		"-N DOCKER-USER",
		"-A DOCKER-USER -j RETURN",
		"-A FORWARD -j DOCKER-USER",
		"-A INPUT -i lo -j ACCEPT",
		"-P FORWARD DROP",
		"-t nat -N LIBVIRT_PRT",
		"-t nat -A LIBVIRT_PRT -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN",
		"-t nat -A POSTROUTING -j LIBVIRT_PRT",
	} {
		ns.MustRun(append([]string{"iptables"}, strings.Fields(c)...)...)
	}
}

// TestRulesSpeltAsSave checks that Rules spells every rule exactly as
// iptables-save prints it back, which is what lets Ensure compare text.
func TestRulesSpeltAsSave(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.golden, func(t *testing.T) {
			ns := testns.New(t)
			cmd := ns.Cmd("iptables-restore", "--noflush")
			cmd.Stdin = strings.NewReader(Rules(fx.n))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("iptables-restore: %v: %s", err, out)
			}
			save := ns.IptablesSave()
			for l := range strings.SplitSeq(Rules(fx.n), "\n") {
				if strings.HasPrefix(l, "-I ") { // "-I FORWARD 1 x" saves as "-A FORWARD x"
					f := strings.SplitN(l, " ", 4)
					l = "-A " + f[1] + " " + f[3]
				}
				if strings.HasPrefix(l, "-A ") && !strings.Contains(save, l+"\n") {
					t.Errorf("iptables-save spells differently:\n%s\nsave:\n%s", l, save)
				}
			}
		})
	}
}

// TestGolden compares the whole iptables-save of a namespace after Ensure with
// testdata/<fixture>.golden; `go test ./internal/nat -update` rewrites them.
func TestGolden(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.golden, func(t *testing.T) {
			ns := testns.New(t)
			if r := ensure(t, ns, fx.n); !r.Changed {
				t.Fatal("Ensure on an empty namespace changed nothing")
			}
			got := goldenHeader(fx.n) + ns.IptablesSave()
			golden(t, fx.golden, "iptables-save", got)
		})
	}
}

// golden compares got, a dump by tool after Ensure, with
// testdata/NAME.golden, which -update rewrites first.
func golden(t *testing.T, name, tool, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/nat -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s after Ensure differs from %s:\n%s", tool, path, diff(string(want), got))
	}
}

// goldenHeader says which network a golden shows and how it was made.
func goldenHeader(n Network) string {
	sub := "-"
	if n.Subnet.IsValid() {
		sub = n.Subnet.String()
	}
	allow := ""
	if len(n.AllowFrom) > 0 {
		allow = " allow_from=" + strings.Join(n.AllowFrom, ",")
	}
	if n.Overlay != nil {
		allow += "\n#   vxlan " + n.Overlay.String()
	}
	for _, f := range n.Forwards {
		host := ""
		if f.HostIP.IsValid() {
			host = f.HostIP.String() + ":"
		}
		allow += fmt.Sprintf("\n#   forward %s %s%d-%d -> %s:%d", f.Proto, host, f.First, f.Last, f.Guest, f.GuestPort)
	}
	return fmt.Sprintf("# iptables-save of an empty network namespace after Ensure of\n"+
		"#   name=%s bridge=%s mode=%s subnet=%s services=%t%s\n"+
		"# (counters and timestamps stripped; regenerate: go test ./internal/nat -update)\n",
		n.Name, n.Bridge, n.Mode, sub, n.Services, allow)
}

// diff lists the lines only in want (-) and only in got (+).
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// TestLifecycleBesideForeignRules runs two networks through Ensure and Remove
// with Docker's and libvirt's rules in place, and expects to leave the
// namespace exactly as it found it.
func TestLifecycleBesideForeignRules(t *testing.T) {
	ns := testns.New(t)
	foreign(t, ns)
	before := ns.IptablesSave()

	if r := ensure(t, ns, netA); !r.Changed {
		t.Fatal("first Ensure changed nothing")
	}
	g := generation(t, ns)
	if r := ensure(t, ns, netA); r.Changed {
		t.Fatal("second Ensure changed something")
	}
	if g2 := generation(t, ns); g2 != g {
		t.Fatalf("second Ensure committed a transaction: generation %d -> %d", g, g2)
	}
	ensure(t, ns, netB)
	assertRules(t, ns, netA, true)
	assertRules(t, ns, netB, true)
	assertForward(t, ns, prefixGrd+netA.Name, prefixGrd+netB.Name, prefixFwd+netA.Name, prefixFwd+netB.Name, "DOCKER-USER")
	assertFirst(t, ns, "nat", "POSTROUTING", prefixNAT+netA.Name)

	remove(t, ns, netA)
	assertRules(t, ns, netA, false)
	assertRules(t, ns, netB, true)
	remove(t, ns, netB)
	if after := ns.IptablesSave(); after != before {
		t.Fatalf("Remove left the namespace changed:\n%s", diff(before, after))
	}
	remove(t, ns, netB)
	remove(t, ns, netA)
}

// assertRules checks with go-iptables (`iptables -C`, a different code path
// from iptables-save) that every rule and jump of n is there, or none is.
func assertRules(t *testing.T, ns *testns.NS, n Network, present bool) {
	t.Helper()
	err := ns.Do(func() error {
		ipt, err := iptables.New()
		if err != nil {
			return err
		}
		for _, c := range chains(n) {
			ok, err := ipt.ChainExists(c.table, c.name)
			if err != nil || ok != present {
				return fmt.Errorf("chain %s exists=%t, want %t (%w)", c.name, ok, present, err)
			}
			if !present {
				continue // no jump can point at a chain that is gone
			}
			for _, r := range append(c.rules, nil) {
				where := c.name
				if r == nil {
					where, r = c.parent, jump(n, c)
				}
				ok, err := ipt.Exists(c.table, where, r...)
				if err != nil || !ok {
					return fmt.Errorf("%s -A %s %s: missing (%w)", c.table, where, strings.Join(r, " "), err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// assertForward checks that FORWARD's rules jump to targets, in this order.
func assertForward(t *testing.T, ns *testns.NS, targets ...string) {
	t.Helper()
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(ns.MustRun("iptables", "-S", "FORWARD")), "\n")[1:] {
		f := strings.Fields(l)
		got = append(got, f[len(f)-1])
	}
	if !slices.Equal(got, targets) {
		t.Fatalf("FORWARD jumps to\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(targets, "\n"))
	}
}

// assertFirst checks that the first rule of a builtin chain jumps to target.
func assertFirst(t *testing.T, ns *testns.NS, table, chain, target string) {
	t.Helper()
	out := ns.MustRun("iptables", "-t", table, "-S", chain)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasSuffix(lines[1], "-j "+target) {
		t.Fatalf("first rule of %s %s does not jump to %s:\n%s", table, chain, target, out)
	}
}

// TestSelfHeal breaks the rules in the ways a user or another tool might and
// expects one Ensure to bring back exactly the set.
func TestSelfHeal(t *testing.T) {
	ns := testns.New(t)
	ensure(t, ns, netA)
	want := ns.IptablesSave()
	for _, breakIt := range []string{
		"iptables -t nat -F",
		"iptables -D FORWARD -m comment --comment kvmnet:a -j KVMNET-FWD-a",
		"iptables -I FORWARD 2 -m comment --comment kvmnet:a -j KVMNET-FWD-a",
		"iptables -D KVMNET-FWD-a 2",
		"iptables -D FORWARD -m comment --comment kvmnet:a -j KVMNET-GRD-a",
		"iptables -D KVMNET-GRD-a 1",
		"iptables -D KVMNET-IN-a 3",
		"iptables -A KVMNET-IN-a -j ACCEPT",
		"iptables -t nat -X KVMNET-NAT-a",
	} {
		t.Run(breakIt, func(t *testing.T) {
			if strings.HasSuffix(breakIt, "-X KVMNET-NAT-a") {
				ns.MustRun("iptables", "-t", "nat", "-F")
			}
			ns.MustRun(strings.Fields(breakIt)...)
			if r := ensure(t, ns, netA); !r.Changed {
				t.Fatal("Ensure changed nothing")
			}
			if got := ns.IptablesSave(); got != want {
				t.Fatalf("Ensure did not restore the set:\n%s", diff(want, got))
			}
		})
	}
}

// TestModeChange expects Ensure to drop the chains a network no longer needs.
func TestModeChange(t *testing.T) {
	ns, fresh := testns.New(t), testns.New(t)
	n := netA
	ensure(t, ns, n)
	n.Mode, n.Services = HostOnly, false
	ensure(t, ns, n)
	ensure(t, fresh, n)
	// The nat table, once made, stays with its builtin chains empty; the
	// fresh namespace never had one.
	got, want := ns.IptablesSave(), fresh.IptablesSave()
	if got != want && got != want+"*nat\n:PREROUTING ACCEPT\n:INPUT ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\nCOMMIT\n" {
		t.Fatalf("NAT+services -> hostonly differs from hostonly made fresh:\n%s", diff(want, got))
	}
}

// TestAllowFromDropped expects Ensure without AllowFrom to remove the allow
// chain and its jump, leaving what Ensure without it makes fresh.
func TestAllowFromDropped(t *testing.T) {
	ns, fresh := testns.New(t), testns.New(t)
	n := netB
	n.AllowFrom = []string{netA.Bridge}
	ensure(t, ns, netA)
	ensure(t, ns, n)
	assertForward(t, ns, prefixAlw+netB.Name, prefixGrd+netA.Name, prefixGrd+netB.Name, prefixFwd+netA.Name, prefixFwd+netB.Name)
	ensure(t, ns, netB)
	ensure(t, fresh, netA)
	ensure(t, fresh, netB)
	if got, want := ns.IptablesSave(), fresh.IptablesSave(); got != want {
		t.Fatalf("dropping AllowFrom differs from never having it:\n%s", diff(want, got))
	}
}

func TestCheck(t *testing.T) {
	ns := testns.New(t)
	var missing []string
	check := func() {
		t.Helper()
		do(t, ns, func(fw *Firewall) (err error) { missing, err = fw.Check(netA); return err })
	}
	check()
	if want := 6 + 4 + 4 + 4; len(missing) != want {
		t.Fatalf("Check on an empty namespace: %d missing, want %d:\n%s", len(missing), want, strings.Join(missing, "\n"))
	}
	ensure(t, ns, netA)
	check()
	if missing != nil {
		t.Fatalf("Check after Ensure: missing %q", missing)
	}
	ns.MustRun("iptables", "-D", "INPUT", "1")
	ns.MustRun("iptables", "-t", "nat", "-D", "KVMNET-NAT-a", "5")
	check()
	want := []string{
		`-t nat -A KVMNET-NAT-a -s 10.10.0.0/24 ! -d 10.10.0.0/24 -m comment --comment "kvmnet:a" -j MASQUERADE`,
		`-t filter -I INPUT 1 -m comment --comment "kvmnet:a" -j KVMNET-IN-a`,
	}
	if !slices.Equal(missing, want) {
		t.Fatalf("Check: missing\n%s\nwant\n%s", strings.Join(missing, "\n"), strings.Join(want, "\n"))
	}
}

// TestGeneration measures what the warm path relies on: reading rules leaves
// the generation alone, and one iptables-restore batch bumps it once per table.
func TestGeneration(t *testing.T) {
	ns := testns.New(t)
	// Skip out here: t.Skip inside ns.Do would end the goroutine Do waits for.
	if fw, err := New(); err != nil || !fw.NFT() {
		t.Skipf("needs iptables-nft (New: %v)", err)
	}
	g0 := generation(t, ns)
	ns.MustRun("iptables-save")
	ns.MustRun("iptables", "-t", "nat", "-S")
	if g := generation(t, ns); g != g0 {
		t.Fatalf("reading rules moved the generation %d -> %d", g0, g)
	}
	r := ensure(t, ns, netA) // filter and nat: two commits
	if g := generation(t, ns); !r.GenOK || r.Gen != g || g != g0+2 {
		t.Fatalf("Ensure: %+v, generation %d -> %d, want +2", r, g0, g)
	}
	r2 := ensure(t, ns, netA)
	if r2.Changed || !r2.GenOK || r2.Gen != r.Gen {
		t.Fatalf("warm Ensure: %+v after %+v", r2, r)
	}
	ns.MustRun("iptables", "-D", "INPUT", "1") // filter only: one commit
	r3 := ensure(t, ns, netA)
	if g := generation(t, ns); !r3.GenOK || r3.Gen != g || g != r.Gen+2 {
		t.Fatalf("Ensure after one foreign change: %+v, generation %d -> %d, want +2", r3, r.Gen, g)
	}
	do(t, ns, func(fw *Firewall) error {
		if !fw.Unchanged(r3.Gen) {
			return errors.New("Unchanged: false right after Ensure")
		}
		if err := fw.Remove(netA); err != nil {
			return err
		}
		if fw.Unchanged(r3.Gen) {
			return errors.New("Unchanged: true after Remove")
		}
		return nil
	})
}

// TestFailedBatch makes Remove fail (a foreign chain jumps into ours, so -X
// fails) and expects the error to name the batch line, and the failing table
// to be left exactly as it was.
func TestFailedBatch(t *testing.T) {
	ns := testns.New(t)
	ensure(t, ns, netB)
	ns.MustRun("iptables", "-N", "FOREIGN")
	ns.MustRun("iptables", "-A", "FOREIGN", "-j", prefixFwd+netB.Name)
	before := ns.IptablesSave()
	err := ns.Do(func() error {
		fw, err := New()
		if err != nil {
			return err
		}
		return fw.Remove(netB)
	})
	if err == nil || !strings.Contains(err.Error(), "iptables-restore: exit status") ||
		!strings.Contains(err.Error(), "(-X "+prefixFwd+netB.Name+")") {
		t.Fatalf("Remove with a foreign jump into our chain: %v", err)
	}
	t.Log(err)
	if after := ns.IptablesSave(); after != before {
		t.Fatalf("failed batch changed the table:\n%s", diff(before, after))
	}
}

func TestNewWithoutIptables(t *testing.T) {
	if _, err := newIn([]string{t.TempDir()}); !errors.Is(err, ErrNoIptables) {
		t.Fatalf("New with no iptables: %v, want ErrNoIptables", err)
	}
}

// TestNewIgnoresPath: a PATH of hostile stubs is never looked at, and an
// iptables that another user could have written is refused, not run.
func TestNewIgnoresPath(t *testing.T) {
	stubs := t.TempDir()
	for _, name := range []string{"iptables", "iptables-save", "iptables-restore"} {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte("#!/bin/sh\ntouch "+stubs+"/ran\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", stubs)
	f, err := New()
	if errors.Is(err, ErrNoIptables) {
		t.Skip("iptables not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.iptables, f.save, f.restore} {
		if strings.HasPrefix(p, stubs) || !slices.Contains(toolDirs, filepath.Dir(p)) {
			t.Errorf("New found %s, want it in %v", p, toolDirs)
		}
	}
	if err := os.Chmod(filepath.Join(stubs, "iptables"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := newIn([]string{stubs}); err == nil || !strings.Contains(err.Error(), "writable by group or others (mode 0777): refused") {
		t.Errorf("New with a world-writable iptables: %v", err)
	}
}

func TestIsNFT(t *testing.T) {
	dir := t.TempDir()
	link := func(name, to string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(to, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link("xtables-nft-multi", "/nonexistent")
	link("iptables-nft", "xtables-nft-multi")
	link("alt-nft", filepath.Join(dir, "iptables-nft"))
	link("alt-legacy", "xtables-legacy-multi")
	if !isNFT(link("iptables", "alt-nft")) {
		t.Error("iptables -> alt -> iptables-nft: not nft")
	}
	if isNFT(link("iptables2", "alt-legacy")) {
		t.Error("iptables -> iptables-legacy: nft")
	}
}
