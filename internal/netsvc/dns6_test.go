package netsvc

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var guestSrc6 = netip.MustParseAddr("fd00:6b76:6d6e::5054:ff:fe00:1")

func aaaaOf(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.AAAA); ok {
			out = append(out, a.AAAA.String())
		}
	}
	return out
}

// TestDNSAAAA: a static host's ip6 and the neighbour-table addresses of a
// leased guest's MAC are answered as AAAA; queries from the IPv6 prefix are
// served, from outside both prefixes refused.
func TestDNSAAAA(t *testing.T) {
	c := testConfig()
	c.Gateway6 = testGW6
	c.Hosts[0].IP6 = netip.MustParseAddr("fd00:6b76:6d6e::99")
	f := &fakeUpstreams{}
	d, _ := dnsFor(t, []string{"192.0.2.1:53"}, f)
	d.prefix6 = c.Gateway6.Masked()
	d.pool.staticByName[testStatic.Name] = c.Hosts[0]
	var asked net.HardwareAddr
	d.neighbours = func(p netip.Prefix, mac net.HardwareAddr) []netip.Addr {
		asked = mac
		return []netip.Addr{guestSrc6}
	}
	if got := aaaaOf(msgAnswer(d, query("fixed.kvm", dns.TypeAAAA), guestSrc6, "udp")); !slices.Equal(got, []string{"fd00:6b76:6d6e::99"}) {
		t.Errorf("AAAA of the static host: %v", got)
	}
	r := msgAnswer(d, query("web.kvm", dns.TypeAAAA), guestSrc6, "udp")
	if got := aaaaOf(r); !slices.Equal(got, []string{guestSrc6.String()}) || asked.String() != macN(1).String() || !r.Authoritative {
		t.Errorf("AAAA of the leased guest: %v (neighbours asked for %s)", got, asked)
	}
	if got := aaaaOf(msgAnswer(d, query("web.kvm", dns.TypeA), guestSrc6, "udp")); len(got) != 0 {
		t.Errorf("an A query got AAAA records: %v", got)
	}
	if r := msgAnswer(d, query("web.kvm", dns.TypeAAAA), netip.MustParseAddr("fd00:1::5"), "udp"); r.Rcode != dns.RcodeRefused {
		t.Errorf("query from outside both prefixes: rcode %d, want REFUSED", r.Rcode)
	}
}

// TestNetDNSOverIPv6: the daemon answers on the IPv6 gateway, and a guest
// that leased a name and talked to the host over IPv6 has its address as AAAA,
// learnt from the bridge's neighbour table.
func TestNetDNSOverIPv6(t *testing.T) {
	cfg := testConfig()
	cfg.Gateway6 = testGW6
	n := newTestNet(t, cfg)
	n.host.MustRun("ip", "addr", "add", testGW6.String(), "dev", "br0", "nodad")
	n.guest.MustRun("ip", "addr", "add", "fd00:6b76:6d6e::77/64", "dev", "eth0", "nodad")
	n.start()
	newRawClient(t, n.guest, "eth0").dora(t, nil, withHostname("six"))
	// Any exchange with the host puts the guest's address in its neighbour table.
	n.guest.MustRun("ping", "-c", "1", "-W", "5", testGW6.Addr().String())
	var got []string
	err := n.guest.Do(func() error {
		cl := &dns.Client{Timeout: 3 * time.Second}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, _, err := cl.Exchange(query("six.kvm", dns.TypeAAAA), "["+testGW6.Addr().String()+"]:53")
			if err == nil {
				got = aaaaOf(r)
			}
			if len(got) > 0 || time.Now().After(deadline) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil || !slices.Equal(got, []string{"fd00:6b76:6d6e::77"}) {
		t.Errorf("AAAA of six.kvm over IPv6: %v, %v; want fd00:6b76:6d6e::77", got, err)
	}
}
