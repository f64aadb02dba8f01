package netsvc

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// handlerFor makes a socketless handler of c.
func handlerFor(t testing.TB, c Config) *dhcpd {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return newDHCPd(c, newPool(c), testLog(t))
}

// dora runs DISCOVER, REQUEST on the handler and returns the ACK.
func dora(t *testing.T, d *dhcpd, clk *fixedClock, mac []byte, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, mac, mods...), clk.now())
	if off == nil || mt(off.msg) != dhcpv4.MessageTypeOffer {
		t.Fatalf("no offer for %x: %v", mac, off)
	}
	ip := addrOf(off.msg.YourIPAddr)
	ack := d.handle(newReq(t, dhcpv4.MessageTypeRequest, mac, append(mods, optReqIP(ip), optServerID(testGW))...), clk.now())
	if ack == nil || mt(ack.msg) != dhcpv4.MessageTypeAck || addrOf(ack.msg.YourIPAddr) != ip {
		t.Fatalf("no ack of %s for %x: %v", ip, mac, ack)
	}
	return ack.msg
}

func TestHandleDORAOptions(t *testing.T) {
	c := testConfig()
	c.MTU = 1400
	d, clk := handlerFor(t, c), newClock()
	mac := macN(1)
	off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, mac), clk.now())
	if off.kind != sendUnicastMAC || off.ip.String() != "192.168.100.2" || off.mac.String() != mac.String() {
		t.Errorf("offer sent %v to %s/%s, want unicast to .2 at %s", off.kind, off.ip, off.mac, mac)
	}
	ack := dora(t, d, clk, mac, withHostname("Web.example.org"))
	checks := map[string]bool{
		"router":     addrOf(ack.Router()[0]) == testGW,
		"mask":       ack.SubnetMask().String() == "ffffff00",
		"broadcast":  addrOf(ack.BroadcastAddress()).String() == "192.168.100.255",
		"dns":        addrOf(ack.DNS()[0]) == testGW,
		"domain":     ack.DomainName() == "kvm",
		"lease":      ack.IPAddressLeaseTime(0) == time.Hour,
		"server id":  addrOf(ack.ServerIdentifier()) == testGW,
		"mtu":        string(ack.Options.Get(dhcpv4.OptionInterfaceMTU)) == "\x05\x78",
		"renew T1":   ack.IPAddressRenewalTime(0) == 30*time.Minute,
		"no siaddr":  addrOf(ack.ServerIPAddr).IsUnspecified(),
		"xid copied": ack.TransactionID != dhcpv4.TransactionID{},
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("ack option %s wrong:\n%s", name, ack.Summary())
		}
	}
	if ip, ok := d.pool.lookup("web", clk.now()); !ok || ip.String() != "192.168.100.2" {
		t.Errorf("hostname not indexed: %v %v", ip, ok)
	}
}

func TestHandleNoMTUOptionAt1500AndNoDNSOption(t *testing.T) {
	c := testConfig()
	c.MTU, c.DNS = 1500, false
	ack := dora(t, handlerFor(t, c), newClock(), macN(1))
	if ack.Options.Has(dhcpv4.OptionInterfaceMTU) || ack.Options.Has(dhcpv4.OptionDomainNameServer) {
		t.Errorf("unexpected MTU or DNS option:\n%s", ack.Summary())
	}
}

// TestHandleNoRouterOnHostOnly: a network that does not route (host-only)
// hands out no default route.
func TestHandleNoRouterOnHostOnly(t *testing.T) {
	c := testConfig()
	c.Router = false
	d, clk := handlerFor(t, c), newClock()
	ack := dora(t, d, clk, macN(1))
	inf := d.handle(newReq(t, dhcpv4.MessageTypeInform, macN(2), withCiaddr(netip.MustParseAddr("192.168.100.200"))), clk.now())
	for name, m := range map[string]*dhcpv4.DHCPv4{"ack": ack, "inform": inf.msg} {
		if m.Options.Has(dhcpv4.OptionRouter) {
			t.Errorf("%s has a router option:\n%s", name, m.Summary())
		}
	}
}

func TestHandleBroadcastFlagAndClientIDCopied(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	id := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3}))
	off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(1), dhcpv4.WithBroadcast(true), id), clk.now())
	if off.kind != sendBroadcast {
		t.Errorf("broadcast flag ignored: kind %v", off.kind)
	}
	if string(off.msg.Options.Get(dhcpv4.OptionClientIdentifier)) != "\x01\x02\x03" {
		t.Errorf("client id not copied (RFC 6842)")
	}
}

func TestHandleDistinctClientsAndStatic(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	a := addrOf(dora(t, d, clk, macN(1)).YourIPAddr)
	b := addrOf(dora(t, d, clk, macN(2)).YourIPAddr)
	s := dora(t, d, clk, testStatic.MAC)
	if a == b {
		t.Errorf("two clients got %s", a)
	}
	if addrOf(s.YourIPAddr) != testStatic.IP || s.HostName() != "fixed" {
		t.Errorf("static host got %s name %q", s.YourIPAddr, s.HostName())
	}
	// The static address never goes to anyone else, even when asked for.
	off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(3), optReqIP(testStatic.IP)), clk.now())
	if addrOf(off.msg.YourIPAddr) == testStatic.IP {
		t.Errorf("static address offered to another client")
	}
	nak := d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(3), optReqIP(testStatic.IP)), clk.now())
	if nak == nil || mt(nak.msg) != dhcpv4.MessageTypeNak || nak.kind != sendBroadcast {
		t.Errorf("request of the static address by another client: %v, want broadcast NAK", nak)
	}
}

func TestHandleRenewRebindInitReboot(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	ip := addrOf(dora(t, d, clk, macN(1)).YourIPAddr)
	clk.add(40 * time.Minute)
	renew := d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(1), withCiaddr(ip)), clk.now())
	if renew == nil || mt(renew.msg) != dhcpv4.MessageTypeAck || renew.kind != sendUnicastIP || renew.ip != ip {
		t.Fatalf("renew: %v", renew)
	}
	reboot := d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(1), optReqIP(ip)), clk.now())
	if reboot == nil || mt(reboot.msg) != dhcpv4.MessageTypeAck {
		t.Fatalf("init-reboot: %v", reboot)
	}
	// Another client asking for that address while it is leased: NAK.
	other := d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(2), optReqIP(ip)), clk.now())
	if other == nil || mt(other.msg) != dhcpv4.MessageTypeNak {
		t.Fatalf("init-reboot of a leased address by another client: %v", other)
	}
	// Authoritative: a client we forgot gets a free address it asks for.
	free := netip.MustParseAddr("192.168.100.77")
	got := d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(3), optReqIP(free)), clk.now())
	if got == nil || mt(got.msg) != dhcpv4.MessageTypeAck || addrOf(got.msg.YourIPAddr) != free {
		t.Fatalf("init-reboot of a free address: %v", got)
	}
}

func TestHandleWrongSubnet(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	other := netip.MustParseAddr("10.1.2.3")
	nak := d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(1), optReqIP(other)), clk.now())
	if nak == nil || mt(nak.msg) != dhcpv4.MessageTypeNak {
		t.Errorf("init-reboot into another subnet: %v, want NAK", nak)
	}
	for name, req := range map[string]*dhcpv4.DHCPv4{
		"renew other subnet":  newReq(t, dhcpv4.MessageTypeRequest, macN(1), withCiaddr(other)),
		"inform other subnet": newReq(t, dhcpv4.MessageTypeInform, macN(1), withCiaddr(other)),
		"other server":        newReq(t, dhcpv4.MessageTypeRequest, macN(1), optReqIP(netip.MustParseAddr("192.168.100.5")), optServerID(netip.MustParseAddr("192.168.100.250"))),
		"relayed":             newReq(t, dhcpv4.MessageTypeDiscover, macN(1), dhcpv4.WithRelay(netip.MustParseAddr("10.0.0.1").AsSlice())),
		"reply op":            newReq(t, dhcpv4.MessageTypeDiscover, macN(1), func(m *dhcpv4.DHCPv4) { m.OpCode = dhcpv4.OpcodeBootReply }),
		"no message type":     newReq(t, dhcpv4.MessageTypeDiscover, macN(1), dhcpv4.WithoutOption(dhcpv4.OptionDHCPMessageType)),
	} {
		if r := d.handle(req, clk.now()); r != nil {
			t.Errorf("%s: answered %s, want silence", name, r.msg.Summary())
		}
	}
}

func TestHandleReleaseThenRelease(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	ack := dora(t, d, clk, macN(1), withHostname("vm1"))
	ip := addrOf(ack.YourIPAddr)
	if r := d.handle(newReq(t, dhcpv4.MessageTypeRelease, macN(1), withCiaddr(ip), optServerID(testGW)), clk.now()); r != nil {
		t.Errorf("release answered")
	}
	if _, ok := d.pool.lookup("vm1", clk.now()); ok {
		t.Errorf("released lease still resolves")
	}
	if again := addrOf(dora(t, d, clk, macN(1)).YourIPAddr); again != ip {
		t.Errorf("re-lease after release got %s, want the same %s", again, ip)
	}
	// A release by someone else is ignored.
	d.handle(newReq(t, dhcpv4.MessageTypeRelease, macN(2), withCiaddr(ip), optServerID(testGW)), clk.now())
	if r := d.pool.byIP[ip]; r == nil || !r.active(clk.now()) {
		t.Errorf("foreign release ended the lease")
	}
}

func TestHandleDecline(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	ip := addrOf(dora(t, d, clk, macN(1)).YourIPAddr)
	d.handle(newReq(t, dhcpv4.MessageTypeDecline, macN(1), optReqIP(ip), optServerID(testGW)), clk.now())
	next := addrOf(dora(t, d, clk, macN(1)).YourIPAddr)
	if next == ip {
		t.Errorf("declined address %s offered again at once", ip)
	}
	other := addrOf(dora(t, d, clk, macN(2)).YourIPAddr)
	if other == ip {
		t.Errorf("declined address %s offered to another client", ip)
	}
	clk.add(declineHold + time.Second)
	off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(3), optReqIP(ip)), clk.now())
	if addrOf(off.msg.YourIPAddr) != ip {
		t.Errorf("declined address not back in the pool after %s", declineHold)
	}
}

func TestHandleInform(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	ci := netip.MustParseAddr("192.168.100.200")
	r := d.handle(newReq(t, dhcpv4.MessageTypeInform, macN(1), withCiaddr(ci)), clk.now())
	if r == nil || mt(r.msg) != dhcpv4.MessageTypeAck || r.kind != sendUnicastIP || r.ip != ci {
		t.Fatalf("inform: %v", r)
	}
	if r.msg.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || !addrOf(r.msg.YourIPAddr).IsUnspecified() {
		t.Errorf("inform ACK carries a lease:\n%s", r.msg.Summary())
	}
	if addrOf(r.msg.Router()[0]) != testGW {
		t.Errorf("inform ACK lacks the router")
	}
	if _, held := d.pool.byIP[ci]; held {
		t.Errorf("inform made a lease")
	}
}

func TestHandleExhaustedPool(t *testing.T) {
	c := testConfig()
	c.RangeStart, c.RangeEnd = netip.MustParseAddr("192.168.100.10"), netip.MustParseAddr("192.168.100.11")
	d, clk := handlerFor(t, c), newClock()
	dora(t, d, clk, macN(1))
	dora(t, d, clk, macN(2))
	for i := 0; i < 3; i++ {
		if r := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(3)), clk.now()); r != nil {
			t.Fatalf("full pool offered %s", r.msg.YourIPAddr)
		}
	}
	nak := d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(3), optReqIP(netip.MustParseAddr("192.168.100.10"))), clk.now())
	if nak == nil || mt(nak.msg) != dhcpv4.MessageTypeNak {
		t.Errorf("request in a full pool: %v, want NAK", nak)
	}
	// Once a lease expires, its address is reclaimed.
	clk.add(c.LeaseTime + time.Second)
	if off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(3)), clk.now()); off == nil {
		t.Errorf("expired lease not reclaimed")
	}
}

func TestHandleOfferReservedAndForgotten(t *testing.T) {
	c := testConfig()
	c.RangeStart, c.RangeEnd = netip.MustParseAddr("192.168.100.10"), netip.MustParseAddr("192.168.100.10")
	d, clk := handlerFor(t, c), newClock()
	if d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(1)), clk.now()) == nil {
		t.Fatal("no offer")
	}
	if d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(2)), clk.now()) != nil {
		t.Fatal("an address under offer was offered twice")
	}
	// Client 1 takes another server's offer: the reservation ends.
	d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(1), optReqIP(netip.MustParseAddr("10.0.0.9")), optServerID(netip.MustParseAddr("10.0.0.1"))), clk.now())
	if d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(2)), clk.now()) == nil {
		t.Fatal("reservation kept after the client chose another server")
	}
}

func TestLeaseFileRoundTrip(t *testing.T) {
	c := testConfig()
	c.LeaseFile = filepath.Join(t.TempDir(), "leases.json")
	d, clk := handlerFor(t, c), newClock()
	clk.t = time.Now()
	ip := addrOf(dora(t, d, clk, macN(1), withHostname("keep"), dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{9, 9}))).YourIPAddr)
	dora(t, d, clk, testStatic.MAC)
	declined := addrOf(dora(t, d, clk, macN(2)).YourIPAddr)
	d.handle(newReq(t, dhcpv4.MessageTypeDecline, macN(2), optReqIP(declined), optServerID(testGW)), clk.now())
	if err := writeLeaseFile(c.LeaseFile, d.pool.snapshot(clk.now())); err != nil {
		t.Fatal(err)
	}
	ls, err := ctl.Leases(c.LeaseFile)
	if err != nil || len(ls) != 2 {
		t.Fatalf("Leases: %v %v", ls, err)
	}
	if ls[0].IP != ip || ls[0].Hostname != "keep" || ls[0].ClientID != "0909" || !ls[1].Static {
		t.Errorf("leases %+v", ls)
	}
	sv, err := readLeaseFile(c.LeaseFile)
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(c)
	if kept := p.restore(sv, clk.now()); kept != 2 {
		t.Errorf("restored %d of 2", kept)
	}
	if got, _ := p.lookup("keep", clk.now()); got != ip {
		t.Errorf("restored name resolves to %s", got)
	}
	// The declined address stays held after a restart, for the rest of its hold.
	for i := 10; i < 20; i++ {
		if got, _, _ := p.offer(client{key: macKey(macN(i)), mac: macN(i)}, declined, clk.now()); got == declined {
			t.Fatalf("restored pool offered the declined %s", declined)
		}
	}
	if none, err := ctl.Leases(filepath.Join(t.TempDir(), "missing")); err != nil || none != nil {
		t.Errorf("missing file: %v %v", none, err)
	}
}

// TestCommitRenewal: only a client re-committing the address it holds, under
// the same name and before expiry, is a renewal (which the daemon does not log).
func TestCommitRenewal(t *testing.T) {
	c := testConfig()
	p := newPool(c)
	p.dirty = func() {}
	web := client{key: macKey(macN(1)), mac: macN(1), hostname: "web"}
	ip := netip.MustParseAddr("192.168.100.50")
	now := time.Unix(1000, 0)
	for i, step := range []struct {
		c       client
		at      time.Duration
		renewal bool
	}{
		{web, 0, false},          // first lease
		{web, time.Minute, true}, // renewed
		{client{key: web.key, mac: web.mac}, 2 * time.Minute, true},                   // no option 12: keeps its name
		{client{key: web.key, mac: web.mac, hostname: "www"}, 3 * time.Minute, false}, // renamed
		{web, 3*time.Minute + 2*c.LeaseTime, false},                                   // after expiry
	} {
		res := p.commit(step.c, ip, now.Add(step.at))
		if res.r == nil || res.renewal != step.renewal {
			t.Errorf("step %d: commit = %+v, want renewal %v", i, res, step.renewal)
		}
	}
}

// TestNameOwnership: a DNS name belongs to a static host, else to the first
// live lease that claimed it; a later claimant gets its lease without the
// name, and gets the name once the owner's lease is released or has expired.
func TestNameOwnership(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	first := addrOf(dora(t, d, clk, macN(1), withHostname("web")).YourIPAddr)
	thief := dora(t, d, clk, macN(2), withHostname("web"))
	if ip, ok := d.pool.lookup("web", clk.now()); !ok || ip != first {
		t.Errorf("web resolves to %s %v after a second claim, want the first owner %s", ip, ok, first)
	}
	if mt(thief) != dhcpv4.MessageTypeAck {
		t.Errorf("the later claimant got no lease")
	}
	if _, ok := d.pool.reverse(addrOf(thief.YourIPAddr), clk.now()); ok {
		t.Errorf("the later claimant's address has a PTR name")
	}
	dora(t, d, clk, macN(3), withHostname(testStatic.Name))
	if ip, _ := d.pool.lookup(testStatic.Name, clk.now()); ip != testStatic.IP {
		t.Errorf("static name %s taken over: %s", testStatic.Name, ip)
	}

	d.handle(newReq(t, dhcpv4.MessageTypeRelease, macN(1), withCiaddr(first), optServerID(testGW)), clk.now())
	second := addrOf(dora(t, d, clk, macN(2), withHostname("web")).YourIPAddr)
	if ip, ok := d.pool.lookup("web", clk.now()); !ok || ip != second {
		t.Errorf("after the owner's release web resolves to %s %v, want %s", ip, ok, second)
	}
	if again := addrOf(dora(t, d, clk, macN(1), withHostname("web")).YourIPAddr); again == second {
		t.Fatalf("two clients share %s", again)
	}
	if ip, _ := d.pool.lookup("web", clk.now()); ip != second {
		t.Errorf("the old owner took web back from the live owner: %s", ip)
	}

	clk.add(2 * d.leaseTime) // every lease expires; the name is free again
	third := addrOf(dora(t, d, clk, macN(4), withHostname("web")).YourIPAddr)
	if ip, ok := d.pool.lookup("web", clk.now()); !ok || ip != third {
		t.Errorf("after expiry web resolves to %s %v, want %s", ip, ok, third)
	}
}

// fakeProber stands for the hosts on the bridge: inUse answer probes.
type fakeProber struct {
	inUse  map[netip.Addr]bool
	probes []netip.Addr
}

func (f *fakeProber) probe(ips []netip.Addr) (map[netip.Addr]net.HardwareAddr, error) {
	f.probes = append(f.probes, ips...)
	out := map[netip.Addr]net.HardwareAddr{}
	for _, ip := range ips {
		if f.inUse[ip] {
			out[ip] = macN(999)
		}
	}
	return out, nil
}

// TestHandleProbeBeforeFirstOffer: an address is probed before its first
// offer, one that answers is held (and persisted) like a declined one, and
// addresses with a lease history or a recent probe are offered without one.
func TestHandleProbeBeforeFirstOffer(t *testing.T) {
	d, clk := handlerFor(t, testConfig()), newClock()
	taken := netip.MustParseAddr("192.168.100.2")
	pr := &fakeProber{inUse: map[netip.Addr]bool{taken: true}}
	d.setProber(pr)
	first := addrOf(dora(t, d, clk, macN(1)).YourIPAddr)
	if first == taken || len(pr.probes) != probeBatch || pr.probes[0] != taken {
		t.Fatalf("first offer %s after probes %v; want the in-use %s probed and skipped", first, pr.probes, taken)
	}
	if sv := d.pool.snapshot(clk.now()); !sv.held[taken].After(clk.now()) {
		t.Errorf("in-use address not held in the saved pool: %v", sv.held)
	}
	for i := 2; i < probeBatch; i++ {
		dora(t, d, clk, macN(i))
	}
	if len(pr.probes) != probeBatch {
		t.Errorf("addresses probed again within %s: %d probes", probeValid, len(pr.probes))
	}
	// A client coming back for its expired lease: history, no probe.
	clk.add(2 * d.leaseTime)
	n := len(pr.probes)
	if again := addrOf(dora(t, d, clk, macN(1)).YourIPAddr); again != first || len(pr.probes) != n {
		t.Errorf("returning client got %s after %d new probes, want %s without", again, len(pr.probes)-n, first)
	}
}
