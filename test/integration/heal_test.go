package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
	"github.com/kvmnet/kvmnet/internal/warm"
)

// healWithin is how soon a guest must reach the outside again after another
// program took kvmnet's rules away, with no VM event.
const healWithin = 2 * time.Second

// breakage is what another program does to the firewall under a running
// network.
type breakage struct {
	name string
	do   func(h *host)
}

var breakages = []breakage{
	{"nft flush ruleset", func(h *host) { h.MustRun("nft", "flush", "ruleset") }},
	{"table deleted", func(h *host) { h.MustRun("nft", "delete", "table", "inet", "kvmnet") }},
	{"docker restart", func(h *host) {
		// What dockerd does to iptables-nft's filter table when it starts:
		// FORWARD flushed, its policy DROP, its DOCKER-USER jump first.
		h.MustRun("iptables", "-F", "FORWARD")
		h.dockerLike("iptables")
	}},
}

// TestRulesHeal: a NAT guest's outside access comes back within healWithin
// of each breakage, with no VM event, on a network whose DHCP/DNS daemon
// watches its rules and on one without a daemon, whose rule watcher does;
// the heal is logged with the process that made the change. The last down
// leaves the namespace as it was, watcher and daemon gone.
func TestRulesHeal(t *testing.T) {
	for _, tc := range []struct{ name, conf, log string }{
		{"daemon", "[network.default]\nports = \"any\"\n", "default.netsvc.log"},
		{"watcher", "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n", "default.watch.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, "nftables", tc.conf)
			h.outside()
			h.SetLinks(h.Links())
			rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
			h.dockerLike("iptables")
			g := h.guest("vnet0", "192.168.100.10/24", "192.168.100.1")
			h.mustHelper("kvmnet-natup", "vnet0")
			if !reaches(g) {
				t.Fatalf("the guest does not reach the outside after its up:\n%s", h.MustRun("nft", "list", "ruleset"))
			}
			for _, b := range breakages {
				b.do(h)
				if took, ok := reachesWithin(g, healWithin); !ok {
					t.Errorf("%s: the guest does not reach the outside %s later:\n%s\nlog:\n%s", b.name, healWithin,
						h.MustRun("nft", "list", "ruleset"), readLog(h, tc.log))
				} else {
					t.Logf("%s: the guest reaches the outside again after %s", b.name, took.Round(time.Millisecond))
				}
			}
			if log := readLog(h, tc.log); !strings.Contains(log, `msg="rules restored" network=default by="nft (pid `) ||
				!strings.Contains(log, `by="iptables (pid `) {
				t.Errorf("the log does not say who changed the rules:\n%s", log)
			}
			h.mustHelper("kvmnet-natdown", "vnet0")
			h.MustRun("ip", "link", "del", "vnet0")
			h.restartFirewall(rules, fwd)
		})
	}
}

// TestIsolatedGuardsHeal: an isolated network's guards come back within a
// second or two of `nft flush ruleset`, exactly as they were, with no VM event.
func TestIsolatedGuardsHeal(t *testing.T) {
	h := newHost(t, "nftables", "[network.iso]\nbridge = \"kviso0\"\nmode = \"isolated\"\n")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	tap := h.taps("vnet", 1)[0]
	h.mustHelper("kvmnet-ifup@iso", tap)
	want := h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet")
	h.MustRun("nft", "flush", "ruleset")
	deadline := time.Now().Add(healWithin)
	for {
		got, _, err := h.Run("nft", "-s", "list", "table", "inet", "kvmnet")
		if err == nil && got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guards are not back %s after nft flush ruleset:\n%s\nwant\n%s\nlog:\n%s", healWithin, got, want, readLog(h, "iso.watch.log"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.mustHelper("kvmnet-ifdown@iso", tap)
	h.MustRun("ip", "link", "del", tap)
	h.restartFirewall(rules, fwd)
}

// TestLegacyShimHeals: the nftables backend's accept in iptables-legacy's
// FORWARD (the legacy shim, past a Docker-like DROP there) comes back after
// `iptables-legacy -F FORWARD`, which sends no notification: the watcher
// reads the legacy tables every second.
func TestLegacyShimHeals(t *testing.T) {
	h := newHost(t, "nftables", "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n")
	h.dockerLike("iptables-legacy")
	h.outside()
	h.SetLinks(h.Links())
	rules, legacy, fwd := h.rules(), h.save("iptables-legacy"), h.Sysctl("net.ipv4.ip_forward")
	g := h.guest("vnet0", "192.168.100.10/24", "192.168.100.1")
	h.mustHelper("kvmnet-natup", "vnet0")
	if !reaches(g) {
		t.Fatalf("the guest does not reach the outside after its up:\n%s", h.save("iptables-legacy"))
	}
	h.MustRun("iptables-legacy", "-F", "FORWARD")
	if took, ok := reachesWithin(g, healWithin+time.Second); !ok {
		t.Errorf("the guest does not reach the outside after iptables-legacy -F FORWARD:\n%s\nlog:\n%s", h.save("iptables-legacy"), readLog(h, "default.watch.log"))
	} else {
		t.Logf("back after %s", took.Round(time.Millisecond))
	}
	if log := readLog(h, "default.watch.log"); !strings.Contains(log, `by=iptables-legacy`) {
		t.Errorf("the log does not name iptables-legacy:\n%s", log)
	}
	h.mustHelper("kvmnet-natdown", "vnet0")
	h.MustRun("ip", "link", "del", "vnet0")
	h.MustRun("iptables-legacy", "-I", "FORWARD", "-j", "DOCKER-USER") // the rule the test flushed
	h.assertClean(rules, fwd)
	if got := h.save("iptables-legacy"); got != legacy {
		t.Errorf("iptables-legacy-save differs from before:\n--- before\n%s\n--- after\n%s", legacy, got)
	}
}

// restartFirewall checks that the last down left no rule of kvmnet's, then
// puts the rules back as newHost made them, which the test's breakages took
// away, and checks that the namespace is as it was (AssertClean: no
// daemon, watcher or state left).
func (h *host) restartFirewall(before ruleset, fwd string) {
	h.T.Helper()
	h.Settle()
	if got := h.MustRun("nft", "list", "ruleset"); strings.Contains(got, "kvmnet") {
		h.T.Errorf("kvmnet's rules left after the last down:\n%s", got)
	}
	h.MustRun("nft", "flush", "ruleset")
	for _, r := range [][]string{{"-P", "FORWARD", "ACCEPT"}, {"-t", "nat", "-P", "POSTROUTING", "ACCEPT"}, {"-P", "INPUT", "ACCEPT"}} {
		h.MustRun(append([]string{"iptables"}, r...)...)
	}
	h.assertClean(before, fwd)
}

// TestHealBacksOff: another program that deletes kvmnet's table again and
// again (60 times, 50 ms apart) gets no heal for each: after a few heals
// within two seconds the watcher says that it heals less often, and does;
// once the other program stops, the rules are back as they were.
func TestHealBacksOff(t *testing.T) {
	h := newHost(t, "nftables", "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n")
	tap := h.taps("vnet", 1)[0]
	h.mustHelper("kvmnet-natup", tap)
	want := h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet")
	h.MustRun("sh", "-c", "for i in $(seq 60); do nft delete table inet kvmnet 2>/dev/null; sleep 0.05; done")
	log := readLog(h, "default.watch.log")
	heals := strings.Count(log, `msg="rules restored"`)
	if !strings.Contains(log, "another program keeps removing the rules; healing less often") || heals > 15 {
		t.Errorf("%d heals of 60 deletions, want a back-off:\n%s", heals, log)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _, err := h.Run("nft", "-s", "list", "table", "inet", "kvmnet")
		if err == nil && got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rules are not back after the other program stopped:\n%s\nlog:\n%s", got, readLog(h, "default.watch.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d heals of 60 deletions", heals)
	h.mustHelper("kvmnet-natdown", tap)
}

// TestHealQuiet: kvmnet's own changes (another network's up, which on the
// iptables backend execs iptables-restore, and writes the legacy shim) make
// no heal restore or rewrite anything: not the rules, not the hot file a
// warm up proves against.
func TestHealQuiet(t *testing.T) {
	matrix(t, func(t *testing.T, fw string) {
		h := newHost(t, fw, "[network.default]\nports = \"any\"\n[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\ndhcp = false\ndns = false\n")
		h.dockerLike("iptables-legacy")
		taps := h.taps("vnet", 3)
		h.mustHelper("kvmnet-natup", taps[0])
		h.mustHelper("kvmnet-ifup@lab", taps[1])
		h.mustHelper("kvmnet-natup", taps[2])
		hot, hotErr := os.Stat(h.stateFile(warm.Ext)) // none on the iptables backend
		time.Sleep(1500 * time.Millisecond)
		if now, err := os.Stat(h.stateFile(warm.Ext)); hotErr == nil && (err != nil || !now.ModTime().Equal(hot.ModTime())) {
			t.Errorf("the network's hot file was rewritten with no other program about (%v)", err)
		}
		for _, log := range []string{"default.netsvc.log", "lab.watch.log"} {
			if l := readLog(h, log); strings.Contains(l, "rules restored") || strings.Contains(l, "heal failed") {
				t.Errorf("%s: heals with no other program about:\n%s", log, l)
			}
		}
		h.mustHelper("kvmnet-natdown", taps[0])
		h.mustHelper("kvmnet-ifdown@lab", taps[1])
		h.mustHelper("kvmnet-natdown", taps[2])
	})
}

// reachesWithin pings the outside host from g until it answers or wait has
// passed, and says how long it took.
func reachesWithin(g *testns.NS, wait time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < wait {
		if _, _, err := g.Run("ping", "-c", "1", "-W", "0.2", "203.0.113.2"); err == nil {
			return time.Since(start), true
		}
	}
	return time.Since(start), false
}

// readLog returns the state directory's file name: a daemon's or a watcher's log.
func readLog(h *host, name string) string {
	b, _ := os.ReadFile(filepath.Join(h.State, name))
	return string(b)
}
