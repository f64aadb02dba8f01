package netsvc

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"

	"github.com/kvmnet/kvmnet/internal/testns"
)

var testGW6 = netip.MustParsePrefix("fd00:6b76:6d6e::1/64")

// raGuest listens for RAs on eth0 of the guest namespace, as a host's kernel
// would (from the unspecified address, so that DAD does not delay it).
type raGuest struct {
	t testing.TB
	c *ndp.Conn
}

func newRAGuest(t testing.TB, ns *testns.NS) *raGuest {
	t.Helper()
	g := &raGuest{t: t}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		g.c, _, err = ndp.Listen(ifi, ndp.Unspecified)
		if err != nil {
			return err
		}
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeRouterAdvertisement)
		if err := g.c.SetICMPFilter(&f); err != nil {
			return err
		}
		return g.c.SetControlMessage(ipv6.FlagHopLimit, true)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.c.Close() })
	return g
}

// next returns the next RA, its source and hop limit, within d.
func (g *raGuest) next(d time.Duration) (*ndp.RouterAdvertisement, netip.Addr, int) {
	g.t.Helper()
	_ = g.c.SetReadDeadline(time.Now().Add(d))
	for {
		m, cm, src, err := g.c.ReadFrom()
		if err != nil {
			g.t.Fatalf("no router advertisement within %s: %v", d, err)
		}
		if ra, ok := m.(*ndp.RouterAdvertisement); ok {
			return ra, src, cm.HopLimit
		}
	}
}

// TestNetRAFields: on a NAT network with address6 the daemon advertises,
// from the bridge's link-local address with hop limit 255: the /64 on-link
// and autonomous, itself as default router, its DNS (RDNSS, DNSSL) and the
// MTU, field by field as the configuration says.
func TestNetRAFields(t *testing.T) {
	cfg := testConfig()
	cfg.Gateway6, cfg.MTU = testGW6, 1400
	n := newTestNet(t, cfg)
	n.host.MustRun("ip", "addr", "add", testGW6.String(), "dev", "br0", "nodad")
	g := newRAGuest(t, n.guest)
	n.start()
	ra, src, hops := g.next(10 * time.Second)
	var brMAC net.HardwareAddr
	var brLL netip.Addr
	_ = n.host.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		brMAC = ifi.HardwareAddr
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() {
				brLL = p.Addr()
			}
		}
		return nil
	})
	if src.WithZone("") != brLL || hops != 255 {
		t.Errorf("RA from %s with hop limit %d, want the bridge's link-local %s and 255", src, hops, brLL)
	}
	want := &ndp.RouterAdvertisement{
		CurrentHopLimit: 64, RouterSelectionPreference: ndp.Medium, RouterLifetime: 30 * time.Minute,
		Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: brMAC},
			&ndp.PrefixInformation{PrefixLength: 64, OnLink: true, AutonomousAddressConfiguration: true,
				ValidLifetime: 24 * time.Hour, PreferredLifetime: 4 * time.Hour, Prefix: netip.MustParseAddr("fd00:6b76:6d6e::")},
			ndp.NewMTU(1400),
			&ndp.RecursiveDNSServer{Lifetime: 10 * time.Minute, Servers: []netip.Addr{testGW6.Addr()}},
			&ndp.DNSSearchList{Lifetime: 10 * time.Minute, DomainNames: []string{"kvm"}},
		},
	}
	if !reflect.DeepEqual(ra, want) {
		t.Errorf("RA:\n got %+v\nwant %+v", describeRA(ra), describeRA(want))
	}
	if ra.ManagedConfiguration || ra.OtherConfiguration {
		t.Errorf("RA sets M or O: no DHCPv6 here")
	}
}

// TestNetRAHostOnlyAnswersSolicitation: a network that does not route
// (hostonly: no dhcp_router) advertises its prefix with router lifetime 0 (no
// default route, as DHCP gives no router option), no DNS options when DNS is
// off, no MTU at 1500; after the quick initial RAs, a router solicitation is
// answered at once rather than at the next periodic RA, minutes later.
func TestNetRAHostOnlyAnswersSolicitation(t *testing.T) {
	cfg := testConfig()
	cfg.Gateway6, cfg.Router, cfg.DNS = testGW6, false, false
	n := newTestNet(t, cfg)
	g := newRAGuest(t, n.guest)
	n.start()
	var ra *ndp.RouterAdvertisement
	for range raInitialCount {
		ra, _, _ = g.next(10 * time.Second)
	}
	if ra.RouterLifetime != 0 || len(ra.Options) != 2 {
		t.Errorf("hostonly RA: %s, want router lifetime 0 and only source link-layer and prefix options", describeRA(ra))
	}
	// The guest's kernel solicits when its link comes up (after DAD of its link-local address).
	n.guest.MustRun("ip", "link", "set", "eth0", "down")
	n.guest.MustRun("ip", "link", "set", "eth0", "up")
	// The next periodic RA is raInterval (100 s) away: this one answers the RS.
	g.next(raMinDelay + 5*time.Second)
}

func describeRA(ra *ndp.RouterAdvertisement) string {
	s := fmt.Sprintf("hop=%d M=%t O=%t lifetime=%s", ra.CurrentHopLimit, ra.ManagedConfiguration, ra.OtherConfiguration, ra.RouterLifetime)
	for _, o := range ra.Options {
		s += fmt.Sprintf(" %T%+v", o, o)
	}
	return s
}
