package firewall

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// Keep the main goroutine on the main thread: testns.NS.Do locks a goroutine
// into a namespace (see package nat's tests).
func init() { runtime.LockOSThread() }

// fixture is a network and the golden file of its rules.
type fixture struct {
	golden string
	n      Network
}

var fixtures = []fixture{
	{"nft-nat-services", Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Gateway: netip.MustParsePrefix("192.168.100.1/24"), Services: true}},
	{"nft-nat", Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Gateway: netip.MustParsePrefix("10.77.0.1/20")}},
	{"nft-hostonly-services", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Gateway: netip.MustParsePrefix("192.168.101.1/24"), Services: true}},
	{"nft-hostonly", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Gateway: netip.MustParsePrefix("192.168.101.1/24")}},
	{"nft-isolated", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated}},
	{"nft-nat-forwards", Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Gateway: netip.MustParsePrefix("192.168.100.1/24"), Services: true, Forwards: []PortForward{
		{Proto: "tcp", First: 8080, Last: 8080, Guest: netip.MustParseAddr("192.168.100.5"), GuestPort: 80},
		{Proto: "udp", HostIP: netip.MustParseAddr("203.0.113.2"), First: 5000, Last: 5002, Guest: netip.MustParseAddr("192.168.100.5"), GuestPort: 6000},
		{Proto: "tcp", First: 9000, Last: 9009, Guest: netip.MustParseAddr("192.168.100.6"), GuestPort: 9000},
	}}},
	{"nft-allow", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated, AllowFrom: []string{"kvmbr0", "kvmbr1"}}},
	{"nft-isolated-vxlan", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated, Overlay: testOverlay}},
	{"nft-hostonly-services-vxlan", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Gateway: netip.MustParsePrefix("192.168.101.1/24"), Services: true, Overlay: testOverlay}},
	{"nft-isolated-evpn", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated, Overlay: testEVPN}},
	{"nft-nat-services-evpn", Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Gateway: netip.MustParsePrefix("192.168.100.1/24"), Services: true, Overlay: testEVPN}},
}

// testOverlay is a VXLAN with two peers on a port other than the IANA one.
var testOverlay = &Overlay{VNI: 4242, Port: 8472, Peers: []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")}}

// testEVPN is an EVPN VXLAN on the IANA port, two VTEPs installed at the up.
var testEVPN = &Overlay{VNI: 4242, Port: 4789, EVPN: true, Peers: []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")}}

var (
	netA = Network{Name: "a", Bridge: "kvmbr0", Mode: NAT, Gateway: netip.MustParsePrefix("10.10.0.1/24"), Services: true}
	netB = Network{Name: "b-2", Bridge: "kvmbr1", Mode: HostOnly, Gateway: netip.MustParsePrefix("10.20.0.1/24")}
	netC = Network{Name: "c", Bridge: "kvmbr2", Mode: Isolated}
)

// run runs f with an nftables runner inside ns; f reports failure by
// returning it (t.Fatal there would hang testns.NS.Do).
func run(t testing.TB, ns *testns.NS, f func(fw *nft) error) {
	t.Helper()
	if err := ns.Do(func() error { return f(newNFT(Host{})) }); err != nil {
		t.Fatal(err)
	}
}

func ensure(t testing.TB, ns *testns.NS, n Network) Result {
	t.Helper()
	var r Result
	run(t, ns, func(fw *nft) (err error) { r, err = fw.Ensure(n); return err })
	return r
}

func remove(t testing.TB, ns *testns.NS, n Network) {
	t.Helper()
	run(t, ns, func(fw *nft) error { return fw.Remove(n) })
}

func check(t testing.TB, ns *testns.NS, n Network) []string {
	t.Helper()
	var m []string
	run(t, ns, func(fw *nft) (err error) { m, err = fw.Check(n); return err })
	return m
}

func unchanged(t testing.TB, ns *testns.NS, gen uint32) bool {
	t.Helper()
	var ok bool
	run(t, ns, func(fw *nft) error { ok = fw.Unchanged(gen); return nil })
	return ok
}

// ruleset is `nft -s list ruleset`.
func ruleset(ns *testns.NS) string { return ns.MustRun("nft", "-s", "list", "ruleset") }

// TestNFTGolden pins kvmnet's table per mode, as `nft -s list table inet
// kvmnet` prints it; `go test ./internal/firewall -update` rewrites them. A
// second Ensure changes nothing and keeps the generation; Check finds
// nothing missing; Remove leaves the ruleset as it was.
func TestNFTGolden(t *testing.T) { goldenRoundTrip(t, fixtures) }

// goldenRoundTrip is TestNFTGolden's cycle for each of fxs.
func goldenRoundTrip(t *testing.T, fxs []fixture) {
	for _, fx := range fxs {
		t.Run(fx.golden, func(t *testing.T) {
			ns := testns.New(t)
			before := ruleset(ns)
			r := ensure(t, ns, fx.n)
			if !r.Changed || !r.GenOK {
				t.Fatalf("first Ensure: %+v, want changed with a generation", r)
			}
			golden(t, fx.golden, fmt.Sprintf("# %+v\n", fx.n)+ns.MustRun("nft", "-s", "list", "table", "inet", "kvmnet"))
			if r2 := ensure(t, ns, fx.n); r2.Changed || r2.Gen != r.Gen {
				t.Errorf("second Ensure: %+v, want unchanged at generation %d", r2, r.Gen)
			}
			if !unchanged(t, ns, r.Gen) {
				t.Error("Unchanged is false with nothing changed")
			}
			if m := check(t, ns, fx.n); len(m) > 0 {
				t.Errorf("Check after Ensure: %q", m)
			}
			remove(t, ns, fx.n)
			if got := ruleset(ns); got != before {
				t.Errorf("ruleset after Remove:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/firewall -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// TestNFTOrderIndependent: three networks brought up in two different
// orders give the same table, guards before accepts; removing them one by
// one takes exactly each one's part, and the last takes the table.
func TestNFTOrderIndependent(t *testing.T) {
	var got []string
	for _, order := range [][]Network{{netA, netB, netC}, {netC, netB, netA}} {
		ns := testns.New(t)
		for _, n := range order {
			ensure(t, ns, n)
		}
		got = append(got, chainsSorted(ns.MustRun("nft", "-s", "list", "table", "inet", "kvmnet")))
		for i, n := range order {
			remove(t, ns, n)
			table := ns.MustRun("nft", "-s", "list", "ruleset")
			if strings.Contains(table, "kvmnet:"+n.Name+"\"") {
				t.Errorf("rules of %s left after its Remove:\n%s", n.Name, table)
			}
			if i < len(order)-1 && !strings.Contains(table, "kvmnet:"+order[i+1].Name) {
				t.Errorf("Remove of %s took %s's rules", n.Name, order[i+1].Name)
			}
		}
		if r := ruleset(ns); r != "" {
			t.Errorf("ruleset left after the last Remove:\n%s", r)
		}
	}
	if got[0] != got[1] {
		t.Errorf("start order changed the table:\n%s\n---\n%s", got[0], got[1])
	}
	fwd := got[0][strings.Index(got[0], "chain forward"):]
	fwd = fwd[:strings.Index(fwd, "}")]
	if g, f := strings.LastIndex(fwd, "jump grd-"), strings.Index(fwd, "jump fwd-"); g < 0 || f < 0 || g > f {
		t.Errorf("forward does not run every guard before every accept:\n%s", fwd)
	}
}

// TestNFTSelfHealing: a flushed base chain, a deleted network chain and a
// changed mode are all put right by the next Ensure.
func TestNFTSelfHealing(t *testing.T) {
	ns := testns.New(t)
	ensure(t, ns, netB)
	ensure(t, ns, netA)
	want := ns.MustRun("nft", "-s", "list", "table", "inet", "kvmnet")
	ns.MustRun("nft", "flush", "chain", "inet", "kvmnet", "forward")
	ns.MustRun("nft", "flush", "chain", "inet", "kvmnet", "nat-a")
	if m := check(t, ns, netA); len(m) == 0 {
		t.Error("Check finds nothing missing after a flush")
	}
	if r := ensure(t, ns, netA); !r.Changed {
		t.Error("Ensure after a flush changed nothing")
	}
	if got := ns.MustRun("nft", "-s", "list", "table", "inet", "kvmnet"); got != want {
		t.Errorf("not healed:\n--- want\n%s\n--- got\n%s", want, got)
	}
	iso := netA
	iso.Mode, iso.Gateway, iso.Services = Isolated, netip.Prefix{}, false
	ensure(t, ns, iso)
	if got := ns.MustRun("nft", "list", "table", "inet", "kvmnet"); strings.Contains(got, "nat-a") || strings.Contains(got, "masquerade") {
		t.Errorf("mode change left nat chains:\n%s", got)
	}
	remove(t, ns, iso)
	remove(t, ns, netB)
	if r := ruleset(ns); r != "" {
		t.Errorf("ruleset left:\n%s", r)
	}
}

// TestShim: beside FORWARD and INPUT DROP policies of iptables-nft and of
// iptables-legacy, Ensure puts kvmnet's accepts first in those chains (in
// INPUT only DHCP and DNS, and only for a network with services), and
// Remove takes them out again: both iptables-save and nft's ruleset end as
// they began.
func TestShim(t *testing.T) {
	for _, ipt := range []string{"iptables-nft", "iptables-legacy"} {
		t.Run(ipt, func(t *testing.T) {
			ns := testns.New(t)
			ns.MustRun(ipt, "-P", "FORWARD", "DROP")
			ns.MustRun(ipt, "-P", "INPUT", "DROP")
			ns.MustRun(ipt, "-A", "FORWARD", "-i", "docker0", "-j", "DROP")
			save := func() string { return ns.MustRun(ipt + "-save") }
			strip := func(s string) string { return saveNoise.ReplaceAllString(s, "") }
			before, nftBefore := strip(save()), ruleset(ns)
			ensure(t, ns, netA)
			ensure(t, ns, netB)
			got := save()
			for _, want := range []string{
				"-A FORWARD -i kvmbr0 -o kvmbr0 -m comment --comment \"kvmnet:a\" -j ACCEPT",
				"-A FORWARD -d 10.10.0.0/24 -o kvmbr0 -m comment --comment \"kvmnet:a\" -j ACCEPT",
				"-A FORWARD -s 10.10.0.0/24 -i kvmbr0 -m comment --comment \"kvmnet:a\" -j ACCEPT",
				"-A FORWARD -i kvmbr1 -o kvmbr1 -m comment --comment \"kvmnet:b-2\" -j ACCEPT",
				"-A INPUT -i kvmbr0 -p udp -m udp --dport 67 -m comment --comment \"kvmnet:a\" -j ACCEPT",
				"-A INPUT -d 10.10.0.1/32 -i kvmbr0 -p udp -m udp --dport 53 -m comment --comment \"kvmnet:a\" -j ACCEPT",
				"-A INPUT -d 10.10.0.1/32 -i kvmbr0 -p tcp -m tcp --dport 53 -m comment --comment \"kvmnet:a\" -j ACCEPT",
			} {
				if !strings.Contains(got, want+"\n") {
					t.Errorf("%s-save lacks %s:\n%s", ipt, want, got)
				}
			}
			if m := check(t, ns, netA); len(m) > 0 {
				t.Errorf("Check: %q", m)
			}
			if r := ensure(t, ns, netA); r.Changed {
				t.Errorf("second Ensure changed the shim:\n%s", save())
			}
			var fw Forward
			run(t, ns, func(f *nft) (err error) { fw, err = f.Forward(netA); return err })
			if fw.Policy != "DROP" || fw.Jump < 0 || fw.Blocker >= 0 {
				t.Errorf("Forward = %+v, want policy DROP, kvmnet's accept, no blocker (docker0's DROP is not kvmbr0's)", fw)
			}
			remove(t, ns, netA)
			remove(t, ns, netB)
			if got := strip(save()); got != before {
				t.Errorf("%s-save after Remove:\n%s\nwant:\n%s", ipt, got, before)
			}
			if got := ruleset(ns); got != nftBefore {
				t.Errorf("ruleset after Remove:\n%s\nwant:\n%s", got, nftBefore)
			}
		})
	}
}

// TestChoose: auto picks iptables only when iptables is iptables-legacy and
// legacy tables are in use; nftables otherwise.
func TestChoose(t *testing.T) {
	empty, withIpt, withNFT, proc := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	for dir, multi := range map[string]string{withIpt: "xtables-legacy-multi", withNFT: "xtables-nft-multi"} {
		if err := os.WriteFile(filepath.Join(dir, multi), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(multi, filepath.Join(dir, "iptables")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(proc, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	noLegacy := t.TempDir()
	if err := os.WriteFile(filepath.Join(proc, "net", "ip_tables_names"), []byte("filter\nnat\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		h      Host
		choice Backend
		want   Backend
	}{
		{Host{Dirs: []string{empty}, Proc: proc}, Auto, NFTables},
		{Host{Dirs: []string{withIpt}, Proc: proc}, Auto, IPTables},
		{Host{Dirs: []string{withIpt}, Proc: noLegacy}, "", NFTables},
		{Host{Dirs: []string{withNFT}, Proc: proc}, Auto, NFTables},
		{Host{Dirs: []string{empty}, Proc: proc}, IPTables, IPTables},
		{Host{Dirs: []string{withIpt}, Proc: proc}, NFTables, NFTables},
	} {
		got, why, err := tc.h.Choose(tc.choice)
		if err != nil || got != tc.want {
			t.Errorf("%+v.Choose(%q) = %q (%s), %v; want %q", tc.h, tc.choice, got, why, err, tc.want)
		}
	}
	if _, _, err := (Host{}).Choose("pf"); err == nil {
		t.Error("Choose(pf) is no error")
	}
}

// saveNoise is what differs between two iptables-save runs with equal rules.
var saveNoise = regexp.MustCompile(`(?m)^#.*\n| \[\d+:\d+\]`)

// chainsSorted is an `nft list table` with its chains sorted: nft lists them
// in the order they were made, which is not what the rules mean.
func chainsSorted(table string) string {
	table = strings.TrimSuffix(strings.TrimPrefix(table, "table inet kvmnet {\n"), "}\n")
	chains := strings.Split(table, "\n\n")
	for i := range chains {
		chains[i] = strings.TrimSpace(chains[i])
	}
	slices.Sort(chains)
	return strings.Join(chains, "\n\n")
}

// TestNFTConcurrentNetworks: eight networks come up at once, each in its own
// process's stead (a thread of its own), then go at once: all eight are in
// the table while up, and the table is gone after.
func TestNFTConcurrentNetworks(t *testing.T) {
	ns := testns.New(t)
	nets := make([]Network, 8)
	for i := range nets {
		nets[i] = Network{Name: fmt.Sprintf("n%d", i), Bridge: fmt.Sprintf("kvmbr%d", i), Mode: NAT,
			Gateway: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.1/24", 30+i)), Services: true}
	}
	all := func(f func(fw *nft, n Network) error) {
		errs := make(chan error, len(nets))
		for _, n := range nets {
			go func() { errs <- ns.Do(func() error { return f(newNFT(Host{}), n) }) }()
		}
		for range nets {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	all(func(fw *nft, n Network) error { _, err := fw.Ensure(n); return err })
	fwd := ns.MustRun("nft", "list", "chain", "inet", "kvmnet", "forward")
	for _, n := range nets {
		if !strings.Contains(fwd, "jump grd-"+n.Name+" ") || !strings.Contains(fwd, "jump fwd-"+n.Name+" ") {
			t.Errorf("forward lacks %s's jumps:\n%s", n.Name, fwd)
		}
	}
	all(func(fw *nft, n Network) error { return fw.Remove(n) })
	if r := ruleset(ns); r != "" {
		t.Errorf("ruleset left:\n%s", r)
	}
}

// TestNFTAllowFrom: with network a allowing b's bridge, b's guests reach
// a's, a's do not reach b's, and that holds beside a FORWARD DROP of
// iptables-nft or iptables-legacy (the shim carries the allowance too),
// whichever network came up first.
func TestNFTAllowFrom(t *testing.T) {
	for _, tc := range []struct{ first, ipt string }{{"a", "iptables-nft"}, {"b", "iptables-nft"}, {"b", "iptables-legacy"}} {
		first := tc.first
		t.Run(first+" first beside "+tc.ipt, func(t *testing.T) {
			ns := testns.New(t)
			ns.MustRun(tc.ipt, "-P", "FORWARD", "DROP")
			ns.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
			a := Network{Name: "a", Bridge: "kva", Mode: HostOnly, Gateway: netip.MustParsePrefix("10.1.0.1/24"), AllowFrom: []string{"kvb"}}
			b := Network{Name: "b", Bridge: "kvb", Mode: HostOnly, Gateway: netip.MustParsePrefix("10.2.0.1/24")}
			ga, gb := guestOn(t, ns, a, "10.1.0.10"), guestOn(t, ns, b, "10.2.0.10")
			if first == "a" {
				ensure(t, ns, a)
				ensure(t, ns, b)
			} else {
				ensure(t, ns, b)
				ensure(t, ns, a)
			}
			if _, _, err := gb.Run("ping", "-c", "3", "-i", "0.3", "-W", "1", "10.1.0.10"); err != nil {
				t.Errorf("b's guest does not reach a's: %v\n%s\n%s", err, ruleset(ns), ns.MustRun(tc.ipt+"-save"))
			}
			if _, _, err := ga.Run("ping", "-c", "2", "-i", "0.3", "-W", "1", "10.2.0.10"); err == nil {
				t.Error("a's guest reaches b's, which allows nothing")
			}
			remove(t, ns, a)
			remove(t, ns, b)
			if got := ns.MustRun(tc.ipt + "-save"); strings.Contains(got, "kvmnet") {
				t.Errorf("shim left:\n%s", got)
			}
		})
	}
}

// guestOn makes n's bridge in ns, with its gateway address, and a guest
// namespace on it at addr.
func guestOn(t *testing.T, ns *testns.NS, n Network, addr string) *testns.NS {
	t.Helper()
	g := testns.New(t)
	ns.MustRun("ip", "link", "add", n.Bridge, "type", "bridge")
	ns.MustRun("ip", "addr", "add", n.Gateway.String(), "dev", n.Bridge)
	ns.MustRun("ip", "link", "set", n.Bridge, "up")
	ns.MustRun("ip", "link", "add", "p-"+n.Name, "master", n.Bridge, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	ns.MustRun("ip", "link", "set", "p-"+n.Name, "up")
	g.MustRun("ip", "addr", "add", addr+"/24", "dev", "eth0")
	g.MustRun("ip", "link", "set", "eth0", "up")
	g.MustRun("ip", "route", "add", "default", "via", n.Gateway.Addr().String())
	return g
}

// TestShimNative: beside another nftables table whose forward and input
// chains drop by policy, Ensure puts kvmnet's accepts first in them (with
// conntrack-free matches, IPv4 ones behind meta nfproto), and Remove takes
// them out: the ruleset ends as it began.
func TestShimNative(t *testing.T) {
	ns := testns.New(t)
	ns.MustRun("nft", "add table inet filter; add chain inet filter forward { type filter hook forward priority 0; policy drop; }; "+
		"add chain inet filter input { type filter hook input priority 0; policy drop; }")
	before := ruleset(ns)
	ensure(t, ns, netA)
	got := ns.MustRun("nft", "-s", "list", "table", "inet", "filter")
	for _, want := range []string{
		`iifname "kvmbr0" oifname "kvmbr0" accept comment "kvmnet:a"`,
		`oifname "kvmbr0" ip daddr 10.10.0.0/24 accept comment "kvmnet:a"`,
		`iifname "kvmbr0" ip saddr 10.10.0.0/24 accept comment "kvmnet:a"`,
		`iifname "kvmbr0" udp dport 67 accept comment "kvmnet:a"`,
		`iifname "kvmbr0" ip daddr 10.10.0.1 tcp dport 53 accept comment "kvmnet:a"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("inet filter lacks %s:\n%s", want, got)
		}
	}
	if m := check(t, ns, netA); len(m) > 0 {
		t.Errorf("Check: %q", m)
	}
	if r := ensure(t, ns, netA); r.Changed {
		t.Error("second Ensure changed the shim")
	}
	var fw Forward
	run(t, ns, func(f *nft) (err error) { fw, err = f.Forward(netA); return err })
	if fw.Policy != "DROP" || fw.Jump != 0 || !strings.Contains(fw.Ours, "inet filter forward") {
		t.Errorf("Forward = %+v, want inet filter forward's DROP with kvmnet's accept first", fw)
	}
	remove(t, ns, netA)
	if got := ruleset(ns); got != before {
		t.Errorf("ruleset after Remove:\n%s\nwant:\n%s", got, before)
	}
}
