package netsvc

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/mdlayher/ndp"
)

// ndpAdvertisement is what raMessage must encode, built with
// github.com/mdlayher/ndp's types (the library the daemon used before).
func ndpAdvertisement(c Config, mac net.HardwareAddr) *ndp.RouterAdvertisement {
	ra := &ndp.RouterAdvertisement{CurrentHopLimit: raHopLimit, RouterSelectionPreference: ndp.Medium}
	if c.Router {
		ra.RouterLifetime = raRouterLifetime
	}
	if len(mac) == 6 {
		ra.Options = append(ra.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac})
	}
	sub := c.Gateway6.Masked()
	ra.Options = append(ra.Options, &ndp.PrefixInformation{
		PrefixLength: uint8(sub.Bits()), OnLink: true, AutonomousAddressConfiguration: true,
		ValidLifetime: raValidLifetime, PreferredLifetime: raPreferredLifetime, Prefix: sub.Addr(),
	})
	if c.MTU != 0 && c.MTU != 1500 {
		ra.Options = append(ra.Options, ndp.NewMTU(uint32(c.MTU)))
	}
	if c.DNS {
		ra.Options = append(ra.Options,
			&ndp.RecursiveDNSServer{Lifetime: raDNSLifetime, Servers: []netip.Addr{c.Gateway6.Addr()}},
			&ndp.DNSSearchList{Lifetime: raDNSLifetime, DomainNames: []string{strings.TrimSuffix(c.Domain, ".")}})
	}
	return ra
}

// checkRAMessage: raMessage's bytes are, parsed by ndp, the advertisement
// ndp would have made of c, and ndp marshals that to the same bytes.
func checkRAMessage(t *testing.T, c Config, mac net.HardwareAddr) {
	t.Helper()
	b, err := raMessage(c, mac)
	want := ndpAdvertisement(c, mac)
	wb, werr := ndp.MarshalMessage(want)
	if err != nil {
		// ndp writes labels longer than 63 octets, which DNS's wire
		// format cannot carry (a length octet over 63 is a pointer).
		if werr == nil && fitsDNS(c.Domain) {
			t.Fatalf("raMessage refused what ndp marshals (%s): %v", c.Domain, err)
		}
		return
	}
	if werr != nil {
		// ndp also refuses names it cannot map through IDNA; a label of
		// letters, digits and hyphens always maps.
		t.Fatalf("ndp refuses %q, raMessage took it: %v", c.Domain, werr)
	}
	got, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatalf("ndp cannot parse raMessage's %x: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("raMessage parses to\n%+v\nwant\n%+v", got, want)
	}
	if string(b) != string(wb) {
		t.Fatalf("raMessage %x, ndp %x", b, wb)
	}
}

// fitsDNS reports whether domain's labels are 1-63 octets, 255 in all.
func fitsDNS(domain string) bool {
	domain = strings.TrimSuffix(domain, ".")
	for l := range strings.SplitSeq(domain, ".") {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
	}
	return len(domain) > 0 && len(domain)+2 <= 255
}

func TestRAMessageAsNDP(t *testing.T) {
	mac := mustMAC("52:54:00:12:34:56")
	for _, tc := range []struct {
		router, dns bool
		mtu         int
		domain      string
		mac         net.HardwareAddr
	}{
		{true, true, 0, "kvm", mac},
		{false, true, 1400, "lab.example.org.", mac},
		{true, false, 9000, "", nil},
		{false, false, 1500, "", mac},
	} {
		c := testConfig()
		c.Gateway6 = netip.MustParsePrefix("fd00:1:2:3::1/64")
		c.Router, c.DNS, c.MTU, c.Domain = tc.router, tc.dns, tc.mtu, tc.domain
		checkRAMessage(t, c, tc.mac)
	}
}

// FuzzRAMessage: for any domain, MTU and prefix, raMessage writes what ndp
// writes, or refuses a name ndp refuses too.
func FuzzRAMessage(f *testing.F) {
	f.Add("kvm", 1400, 64, true)
	f.Add("a-b.c0.example", 0, 48, false)
	f.Add(strings.Repeat("x", 64), 9000, 128, true)
	f.Fuzz(func(t *testing.T, domain string, mtu, bits int, router bool) {
		if bits < 0 || bits > 128 || mtu < 0 || mtu > 65535 {
			return
		}
		c := testConfig()
		c.Gateway6 = netip.PrefixFrom(netip.MustParseAddr("fd00:1:2:3:4:5:6:7"), bits)
		c.Router, c.DNS, c.MTU, c.Domain = router, true, mtu, domain
		if strings.ToLower(domain) != domain || !isLDH(strings.ReplaceAll(strings.TrimSuffix(domain, "."), ".", "")) {
			// ndp maps other names through IDNA (to lower case, Unicode);
			// raMessage refuses them: only check that it does not panic.
			_, _ = raMessage(c, mustMAC("52:54:00:12:34:56"))
			return
		}
		checkRAMessage(t, c, mustMAC("52:54:00:12:34:56"))
	})
}

// FuzzRouterSolicitation: what a guest sends is read without a panic, and
// every solicitation ndp parses is taken as one, but those of a code other
// than 0, which ndp takes and RFC 4861 6.1.1 says to discard.
func FuzzRouterSolicitation(f *testing.F) {
	rs, _ := ndp.MarshalMessage(&ndp.RouterSolicitation{Options: []ndp.Option{
		&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mustMAC("52:54:00:12:34:56")}}})
	f.Add(rs)
	f.Add([]byte{133, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ndp.ParseMessage(b)
		if _, ok := m.(*ndp.RouterSolicitation); err == nil && ok && b[1] == 0 && !isRouterSolicitation(b) {
			t.Fatalf("%x: ndp parses a solicitation, isRouterSolicitation says no", b)
		}
	})
}
