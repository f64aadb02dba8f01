package integration

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// firewalldConf is a NAT network with a static host the guest is, and a
// forward to it, beside a host-only network.
const firewalldConf = `[network.default]
ports = "any"
[[network.default.host]]
mac = "52:54:00:00:00:10"
ip = "192.168.100.10"
name = "web"
[[network.default.forward]]
proto = "tcp"
port = 8080
to = "192.168.100.10:80"
[network.lab]
bridge = "kvlab0"
mode = "hostonly"
address = "10.77.0.1/24"
ports = "any"
`

// TestFirewalld: with a real firewalld running (nftables backend, default
// zone public, which rejects guests' DHCP and DNS and everything routed), a
// NAT guest gets its lease, DNS answers and the outside, and is reached
// through a forward; a host-only guest gets its lease; `firewall-cmd
// --reload` cuts the NAT guest off for less than a second, with no VM
// event, and leases, DNS and the forward work after it. With libvirt's zone
// installed, kvmnet binds its bridges to it over D-Bus, and binds them again
// after a reload, which forgets them; without it, the bridges stay in the
// default zone. Either way the reload takes kvmnet's accepts from
// firewalld's chains, and only the heal puts them back (the guest stays cut
// off with the network's daemon held). The last downs take kvmnet's rules
// out, and its bridges out of the zone.
func TestFirewalld(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop []string // zones firewalld is started without
		zone string   // the bridges' zone, "" for the default
	}{
		{"libvirt zone", nil, "libvirt"},
		{"default zone", []string{"libvirt"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { testFirewalld(t, tc.drop, tc.zone) })
	}
}

func testFirewalld(t *testing.T, drop []string, zone string) {
	h := newHost(t, "", firewalldConf)
	f := h.StartFirewalld(drop...)
	o := h.outside()
	g := h.guest("vnet0", "", "")
	g.MustRun("ip", "link", "set", "eth0", "address", "52:54:00:00:00:10")
	l := h.guest("vnet1", "", "")
	h.fwHelper(f, "kvmnet-natup", "vnet0")
	h.fwHelper(f, "kvmnet-ifup@lab", "vnet1")
	zones := func(when string, want string) {
		t.Helper()
		for _, br := range []string{"br0", "kvlab0"} {
			out, _, _ := f.Run("firewall-cmd", "--get-zone-of-interface="+br)
			if got := strings.TrimSpace(out); got != want && !(want == "" && got == "no zone") {
				t.Errorf("%s: %s is in firewalld zone %q, want %q", when, br, got, want)
			}
		}
	}
	zones("up", zone)
	g.EchoSource(t, "tcp4", ":80")
	works := func(when string) {
		t.Helper()
		for name, ns := range map[string]*testns.NS{"nat": g, "hostonly": l} {
			if _, e, err := ns.Run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true"); err != nil {
				t.Errorf("%s: the %s guest gets no lease: %v\n%s\n%s", when, name, err, e, h.DaemonLogs())
			}
		}
		if out, _, _ := g.Run("dig", "+short", "+time=1", "+tries=3", "@192.168.100.1", "web.kvm"); strings.TrimSpace(out) != "192.168.100.10" {
			t.Errorf("%s: DNS answers %q for web.kvm, want 192.168.100.10", when, out)
		}
		if !reaches(g) {
			t.Errorf("%s: the NAT guest does not reach the outside:\n%s", when, h.MustRun("nft", "list", "ruleset"))
		}
		if out, _, err := o.Run("socat", "-T", "2", "-", "TCP:203.0.113.1:8080,connect-timeout=2"); err != nil || strings.TrimSpace(out) != "203.0.113.2" {
			t.Errorf("%s: the forward answers %q (%v), want the outside's address", when, out, err)
		}
	}
	if reaches(g) {
		t.Fatal("the guest reaches the outside before its address: the test proves nothing")
	}
	g.MustRun("ip", "addr", "add", "192.168.100.10/24", "dev", "eth0")
	g.MustRun("ip", "route", "add", "default", "via", "192.168.100.1")
	works("up")

	// With its daemon held, the reload takes the accepts kvmnet put into
	// firewalld's chains, and the bridge's zone too (firewalld forgets an
	// interface's zone given at runtime): the guest stays cut off.
	resume := h.Hold("default")
	f.MustRun("firewall-cmd", "--reload")
	if reaches(g) {
		t.Fatal("firewall-cmd --reload does not cut the guest off: the test proves nothing")
	}
	resume()
	if _, ok := reachesWithin(g, healWithin); !ok {
		t.Fatalf("the daemon, let go on, does not heal:\n%s", readLog(h, "default.netsvc.log"))
	}

	gap := outage(g, func() { f.MustRun("firewall-cmd", "--reload") })
	t.Logf("firewall-cmd --reload: the NAT guest lost the outside for at most %s", gap.Round(time.Millisecond))
	if gap >= time.Second {
		t.Errorf("firewall-cmd --reload cut the NAT guest off for %s, want less than a second", gap.Round(time.Millisecond))
	}
	zones("after firewall-cmd --reload", zone)
	works("after firewall-cmd --reload")

	h.fwHelper(f, "kvmnet-natdown", "vnet0")
	h.fwHelper(f, "kvmnet-ifdown@lab", "vnet1")
	h.Settle()
	if got := h.MustRun("nft", "list", "ruleset"); strings.Contains(got, "kvmnet") {
		t.Errorf("kvmnet's rules left after the last downs:\n%s", got)
	}
	zones("after the last downs", "")
}

// fwHelper runs a helper where it reaches firewalld's bus.
func (h *host) fwHelper(f *testhost.Firewalld, prog, tap string) {
	h.T.Helper()
	if _, e, err := f.Run("env", "KVMNET_CONFIG="+h.Config, h.Program(prog), tap); err != nil {
		h.T.Fatalf("%s %s: %v\n%s", prog, tap, err, e)
	}
}

// outage pings the outside host from g every 20 ms while do runs and for two
// seconds after, and returns the longest time between two answers.
func outage(g *testns.NS, do func()) time.Duration {
	var mu sync.Mutex
	last, longest := time.Now(), time.Duration(0)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := g.Run("ping", "-c", "1", "-W", "0.1", "203.0.113.2"); err == nil {
				mu.Lock()
				longest, last = max(longest, time.Since(last)), time.Now()
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	do()
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	return max(longest, time.Since(last))
}
