package netsvc

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/miekg/dns"
)

// fuzzDHCPd is a handler with some state for the fuzzer to hit: a small range
// (so exhaustion is reachable), a bound lease of macN(1) and the static host.
func fuzzDHCPd(t testing.TB, now time.Time) *dhcpd {
	c := testConfig()
	c.RangeStart, c.RangeEnd = netip.MustParseAddr("192.168.100.10"), netip.MustParseAddr("192.168.100.13")
	d := newDHCPd(c, newPool(c), discardLog())
	for _, mac := range [][]byte{macN(1), testStatic.MAC} {
		off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, mac), now)
		d.handle(newReq(t, dhcpv4.MessageTypeRequest, mac, optReqIP(addrOf(off.msg.YourIPAddr)), optServerID(testGW)), now)
	}
	return d
}

// dhcpSeeds are valid messages of every type, the fuzzer's starting points.
func dhcpSeeds(t testing.TB) [][]byte {
	ip := netip.MustParseAddr("192.168.100.10")
	msgs := []*dhcpv4.DHCPv4{
		newReq(t, dhcpv4.MessageTypeDiscover, macN(2), withHostname("a")),
		newReq(t, dhcpv4.MessageTypeDiscover, macN(1), dhcpv4.WithBroadcast(true)),
		newReq(t, dhcpv4.MessageTypeRequest, macN(1), optReqIP(ip), optServerID(testGW)),
		newReq(t, dhcpv4.MessageTypeRequest, macN(1), optReqIP(ip)),
		newReq(t, dhcpv4.MessageTypeRequest, macN(1), withCiaddr(ip)),
		newReq(t, dhcpv4.MessageTypeRelease, macN(1), withCiaddr(ip), optServerID(testGW)),
		newReq(t, dhcpv4.MessageTypeDecline, macN(1), optReqIP(ip), optServerID(testGW)),
		newReq(t, dhcpv4.MessageTypeInform, macN(3), withCiaddr(netip.MustParseAddr("192.168.100.200"))),
		newReq(t, dhcpv4.MessageTypeDiscover, testStatic.MAC, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2}))),
	}
	var out [][]byte
	for _, m := range msgs {
		out = append(out, m.ToBytes())
	}
	return out
}

// FuzzDHCPHandle feeds raw bytes to the packet handler. Whatever comes in,
// it must not panic, any reply must encode and carry an address of the
// subnet, and the pool's indexes must stay consistent.
func FuzzDHCPHandle(f *testing.F) {
	for _, s := range dhcpSeeds(f) {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		d := fuzzDHCPd(t, now)
		rep, err := d.handlePacket(b, now)
		if err != nil || rep == nil {
			checkPool(t, d.pool)
			return
		}
		out, err := dhcpv4.FromBytes(rep.msg.ToBytes())
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if y := addrOf(out.YourIPAddr); !y.IsUnspecified() && !d.pool.prefix.Contains(y) {
			t.Fatalf("yiaddr %s outside the subnet", y)
		}
		if rep.kind == sendUnicastMAC && len(rep.mac) != 6 {
			t.Fatalf("unicast to MAC %x", rep.mac)
		}
		if rep.kind != sendBroadcast && !d.pool.prefix.Contains(rep.ip) {
			t.Fatalf("unicast to %s outside the subnet", rep.ip)
		}
		checkPool(t, d.pool)
	})
}

// checkPool verifies that byIP and byKey point at the same records and that
// no address outside the range or static set is held.
func checkPool(t *testing.T, p *pool) {
	t.Helper()
	for ip, r := range p.byIP {
		if r.ip != ip || p.byKey[r.key] != r {
			t.Fatalf("index mismatch at %s: %+v", ip, r)
		}
		if !p.inRange(ip) && !p.isStatic(ip) {
			t.Fatalf("record of %s outside the range", ip)
		}
	}
	for k, r := range p.byKey {
		if r.key != k || p.byIP[r.ip] != r {
			t.Fatalf("key index mismatch at %s: %+v", k, r)
		}
	}
	for name, r := range p.byName {
		if r.hostname != name || p.byIP[r.ip] != r {
			t.Fatalf("name index mismatch at %s: %+v", name, r)
		}
	}
}

// FuzzDNSAnswer feeds raw bytes to the DNS handler, from inside and outside
// the subnet. It must not panic, and any answer must pack within the size
// the client accepts.
func FuzzDNSAnswer(f *testing.F) {
	for _, q := range []*dns.Msg{query("web.kvm", dns.TypeA), query("web", dns.TypeANY), query("example.org", dns.TypeMX),
		query("2.100.168.192.in-addr.arpa", dns.TypePTR), query("a.b.kvm", dns.TypeA)} {
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, inside bool) {
		d, _ := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
		src := netip.MustParseAddr("10.0.0.1")
		if inside {
			src = guestSrc
		}
		out := d.answer(b, src, "udp")
		if out == nil {
			return
		}
		r, err := parseQuery(b)
		if err != nil {
			t.Fatalf("answered what does not parse: %v", err)
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(out); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if len(out) > r.udpSize() {
			t.Fatalf("answer of %d bytes exceeds %d", len(out), r.udpSize())
		}
		if resp.Id != r.hdr.ID || !resp.Response {
			t.Fatalf("answer with ID %d to query %d, response %v", resp.Id, r.hdr.ID, resp.Response)
		}
		if !inside && resp.Rcode != dns.RcodeRefused {
			t.Fatalf("query from outside answered with rcode %d", resp.Rcode)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDHCPHandle when
// NETSVC_WRITE_SEEDS=1; the files are committed, so plain `go test` replays them.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("NETSVC_WRITE_SEEDS") != "1" {
		t.Skip("set NETSVC_WRITE_SEEDS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDHCPHandle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, b := range dhcpSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir = filepath.Join("testdata", "fuzz", "FuzzDNSAnswer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"web.kvm", "outside.example", "10.100.168.192.in-addr.arpa"} {
		b, _ := query(name, dns.TypeA).Pack()
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", b, i != 1)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
