package netsvc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
	"golang.org/x/sys/unix"
)

// testNet is a kvmnet network in miniature: a "host" namespace with bridge
// br0 (the gateway address on it) where the daemon runs, and a "guest"
// namespace whose eth0 is a veth port of br0.
type testNet struct {
	t      testing.TB
	host   *testns.NS
	guest  *testns.NS
	cfg    Config
	dir    string
	pid    int
	nPorts int
	// exe is the daemon's binary; "" runs the test binary as the daemon.
	exe string
}

// newTestNet builds the namespaces; the daemon is not started.
func newTestNet(t testing.TB, cfg Config) *testNet {
	t.Helper()
	n := &testNet{t: t, host: testns.New(t), guest: testns.New(t), cfg: cfg, dir: t.TempDir()}
	n.host.MustRun("ip", "link", "add", "br0", "type", "bridge")
	n.host.MustRun("ip", "addr", "add", cfg.Gateway.String(), "dev", "br0")
	n.host.MustRun("ip", "link", "set", "br0", "up")
	n.addPort()
	n.cfg.LeaseFile = filepath.Join(n.dir, "test.leases")
	n.cfg.PIDFile = filepath.Join(n.dir, "test.pid")
	return n
}

// addPort adds a veth port to br0 whose peer is ethN in the guest namespace,
// and returns N.
func (n *testNet) addPort() int {
	i := n.nPorts
	n.nPorts++
	hostIf, guestIf := fmt.Sprintf("vh%d", i), fmt.Sprintf("eth%d", i)
	n.host.MustRun("ip", "link", "add", hostIf, "type", "veth", "peer", "name", guestIf, "netns", n.guest.Name)
	n.host.MustRun("ip", "link", "set", hostIf, "master", "br0", "up")
	n.guest.MustRun("ip", "link", "set", guestIf, "up")
	return i
}

// start spawns the daemon in the host namespace, as the lifecycle code does.
func (n *testNet) start() {
	n.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		n.t.Fatal(err)
	}
	if n.exe != "" {
		exe = n.exe
	}
	cfgPath := filepath.Join(n.dir, "netsvc.json")
	if err := ctl.WriteConfig(cfgPath, n.cfg); err != nil {
		n.t.Fatal(err)
	}
	err = n.host.Do(func() error {
		n.pid, err = spawn(exe, cfgPath, n.logPath())
		return err
	})
	if err != nil {
		n.t.Fatalf("spawn: %v", err)
	}
	n.t.Cleanup(func() {
		n.stop()
		if n.t.Failed() {
			b, _ := os.ReadFile(n.logPath())
			n.t.Logf("daemon log:\n%s", b)
		}
	})
}

func (n *testNet) logPath() string { return filepath.Join(n.dir, "netsvc.log") }

// stop stops the daemon, failing the test if that does not work.
func (n *testNet) stop() {
	n.t.Helper()
	if err := ctl.Stop(n.cfg.PIDFile, 5*time.Second); err != nil {
		n.t.Errorf("stop: %v", err)
	}
}

// rawClient is a DHCP client on an AF_PACKET socket: it sends from 0.0.0.0
// like a real client without an address, and it sees replies unicast to its
// MAC before any address is configured.
type rawClient struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr
}

// newRawClient opens the client on ifname inside ns.
func newRawClient(t testing.TB, ns *testns.NS, ifname string) *rawClient {
	t.Helper()
	c := &rawClient{}
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.ifindex, c.mac = ifc.Index, ifc.HardwareAddr
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifc.Index})
	})
	if err != nil {
		t.Fatalf("raw client on %s: %v", ifname, err)
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	t.Cleanup(func() { unix.Close(c.fd) })
	return c
}

// send broadcasts m from src (0.0.0.0 for a client without an address) to
// dst:67; dst 255.255.255.255 goes to the broadcast MAC, anything else too,
// which the bridge floods and the host accepts as addressed to it.
func (c *rawClient) send(m *dhcpv4.DHCPv4, src, dst netip.Addr) error {
	pkt := udp4Packet(m.ToBytes(), src, clientPort, dst, serverPort)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: c.ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return unix.Sendto(c.fd, pkt, 0, to)
}

// sendRaw sends arbitrary bytes as the UDP payload to the server port.
func (c *rawClient) sendRaw(b []byte) error {
	pkt := udp4Packet(b, netip.IPv4Unspecified(), clientPort, netip.MustParseAddr("255.255.255.255"), serverPort)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: c.ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return unix.Sendto(c.fd, pkt, 0, to)
}

// errNoReply is returned when no matching reply came in time.
var errNoReply = errors.New("no reply")

// recv waits for a reply with transaction id xid, returning it and the IP
// destination it was sent to.
func (c *rawClient) recv(xid dhcpv4.TransactionID, timeout time.Duration) (*dhcpv4.DHCPv4, netip.Addr, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // timeout tick
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		m, dst, ok := parseReply(buf[:n])
		if ok && m.TransactionID == xid {
			return m, dst, nil
		}
	}
	return nil, netip.Addr{}, errNoReply
}

// parseReply extracts a DHCP reply to port 68 from an IPv4 packet.
func parseReply(b []byte) (*dhcpv4.DHCPv4, netip.Addr, bool) {
	if len(b) < 28 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_UDP {
		return nil, netip.Addr{}, false
	}
	ihl := int(b[0]&0xf) * 4
	if len(b) < ihl+8 || binary.BigEndian.Uint16(b[ihl+2:]) != clientPort {
		return nil, netip.Addr{}, false
	}
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	m, err := dhcpv4.FromBytes(b[ihl+8:])
	if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
		return nil, netip.Addr{}, false
	}
	return m, dst, true
}

// exchange sends m from 0.0.0.0 to broadcast and waits for the reply.
func (c *rawClient) exchange(m *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, netip.Addr, error) {
	return c.exchangeWithin(m, 2*time.Second)
}

// exchangeWithin is exchange with a timeout, short where silence is expected.
func (c *rawClient) exchangeWithin(m *dhcpv4.DHCPv4, timeout time.Duration) (*dhcpv4.DHCPv4, netip.Addr, error) {
	if err := c.send(m, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255")); err != nil {
		return nil, netip.Addr{}, err
	}
	return c.recv(m.TransactionID, timeout)
}

// dora leases an address for mac (the client's own when nil) and returns the
// ACK. Extra modifiers go on both messages.
func (c *rawClient) dora(t testing.TB, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	if mac == nil {
		mac = c.mac
	}
	off, _, err := c.exchange(newReq(t, dhcpv4.MessageTypeDiscover, mac, mods...))
	if err != nil || mt(off) != dhcpv4.MessageTypeOffer {
		t.Fatalf("discover from %s: %v %v", mac, off, err)
	}
	req := newReq(t, dhcpv4.MessageTypeRequest, mac, append(mods, optReqIP(addrOf(off.YourIPAddr)), optServerID(addrOf(off.ServerIdentifier())))...)
	ack, _, err := c.exchange(req)
	if err != nil || mt(ack) != dhcpv4.MessageTypeAck {
		t.Fatalf("request from %s: %v %v", mac, ack, err)
	}
	return ack
}

func TestNetDORAUnicastFields(t *testing.T) {
	cfg := testConfig()
	cfg.MTU = 1400
	n := newTestNet(t, cfg)
	n.start()
	c := newRawClient(t, n.guest, "eth0")
	disc := newReq(t, dhcpv4.MessageTypeDiscover, c.mac, withHostname("guest1"))
	off, dst, err := c.exchange(disc)
	if err != nil {
		t.Fatalf("discover: %v", err)
	}
	if mt(off) != dhcpv4.MessageTypeOffer || dst != addrOf(off.YourIPAddr) {
		t.Errorf("offer %s sent to %s, want unicast to yiaddr %s", mt(off), dst, off.YourIPAddr)
	}
	ack := c.dora(t, nil, withHostname("guest1"))
	if addrOf(ack.YourIPAddr) != addrOf(off.YourIPAddr) || addrOf(ack.Router()[0]) != testGW ||
		addrOf(ack.DNS()[0]) != testGW || ack.DomainName() != "kvm" || ack.IPAddressLeaseTime(0) != time.Hour ||
		!bytes.Equal(ack.Options.Get(dhcpv4.OptionInterfaceMTU), []byte{0x05, 0x78}) {
		t.Errorf("ack fields:\n%s", ack.Summary())
	}
	// The broadcast flag gets a broadcast reply.
	off2, dst, err := c.exchange(newReq(t, dhcpv4.MessageTypeDiscover, c.mac, dhcpv4.WithBroadcast(true)))
	if err != nil || dst.String() != "255.255.255.255" || off2 == nil {
		t.Errorf("broadcast-flag offer went to %s: %v", dst, err)
	}
}

func TestNetTwoClientsStaticHostAndExhaustion(t *testing.T) {
	cfg := testConfig()
	cfg.RangeStart, cfg.RangeEnd = netip.MustParseAddr("192.168.100.10"), netip.MustParseAddr("192.168.100.11")
	n := newTestNet(t, cfg)
	n.addPort()
	n.start()
	c0, c1 := newRawClient(t, n.guest, "eth0"), newRawClient(t, n.guest, "eth1")
	a, b := addrOf(c0.dora(t, nil).YourIPAddr), addrOf(c1.dora(t, nil).YourIPAddr)
	if a == b {
		t.Errorf("two guests got %s", a)
	}
	s := c0.dora(t, testStatic.MAC, dhcpv4.WithBroadcast(true))
	if addrOf(s.YourIPAddr) != testStatic.IP || s.HostName() != "fixed" {
		t.Errorf("static host: %s %q", s.YourIPAddr, s.HostName())
	}
	// The two-address range is full: a third guest gets no offer, and the
	// daemon says so once and lives on.
	for i := 0; i < 3; i++ {
		if r, _, err := c0.exchangeWithin(newReq(t, dhcpv4.MessageTypeDiscover, macN(7), dhcpv4.WithBroadcast(true)), 300*time.Millisecond); err == nil {
			t.Fatalf("full pool offered %s", r.YourIPAddr)
		}
	}
	if _, ok := ctl.Alive(n.cfg.PIDFile); !ok {
		t.Fatal("daemon died on a full pool")
	}
	log, _ := os.ReadFile(n.logPath())
	if got := bytes.Count(log, []byte("dhcp pool exhausted")); got != 1 {
		t.Errorf("%d pool-exhausted lines, want 1:\n%s", got, log)
	}
}

func TestNetReleaseDeclineInformNak(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	c := newRawClient(t, n.guest, "eth0")
	bc := dhcpv4.WithBroadcast(true)
	ip := addrOf(c.dora(t, macN(1), bc).YourIPAddr)
	if err := c.send(newReq(t, dhcpv4.MessageTypeRelease, macN(1), withCiaddr(ip), optServerID(testGW)), ip, testGW); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if again := addrOf(c.dora(t, macN(1), bc).YourIPAddr); again != ip {
		t.Errorf("re-lease after release: %s, want %s", again, ip)
	}
	if err := c.send(newReq(t, dhcpv4.MessageTypeDecline, macN(1), optReqIP(ip), optServerID(testGW)), netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if next := addrOf(c.dora(t, macN(1), bc).YourIPAddr); next == ip {
		t.Errorf("declined %s leased again", ip)
	}
	nak, dst, err := c.exchange(newReq(t, dhcpv4.MessageTypeRequest, macN(2), optReqIP(netip.MustParseAddr("10.9.8.7"))))
	if err != nil || mt(nak) != dhcpv4.MessageTypeNak || dst.String() != "255.255.255.255" {
		t.Errorf("wrong-subnet request: %v to %s, %v; want broadcast NAK", nak, dst, err)
	}
	// INFORM: the guest configured .200 itself; the ACK is unicast to it.
	ci := netip.MustParseAddr("192.168.100.200")
	n.guest.MustRun("ip", "addr", "add", ci.String()+"/24", "dev", "eth0")
	inf := newReq(t, dhcpv4.MessageTypeInform, c.mac, withCiaddr(ci))
	if err := c.send(inf, ci, netip.MustParseAddr("255.255.255.255")); err != nil {
		t.Fatal(err)
	}
	ack, dst, err := c.recv(inf.TransactionID, 2*time.Second)
	if err != nil || mt(ack) != dhcpv4.MessageTypeAck || dst != ci || ack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("inform: %v to %s, %v", ack, dst, err)
	}
}

func TestNetMalformedPacketsIgnored(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	c := newRawClient(t, n.guest, "eth0")
	good := newReq(t, dhcpv4.MessageTypeDiscover, c.mac).ToBytes()
	junk := [][]byte{nil, {1}, bytes.Repeat([]byte{0xff}, 300), good[:240], append(good[:241:241], 53, 200), good[:100]}
	trunc := append([]byte(nil), good...)
	trunc[2] = 200 // hlen larger than chaddr
	junk = append(junk, trunc)
	for _, b := range junk {
		if err := c.sendRaw(b); err != nil {
			t.Fatal(err)
		}
	}
	c.dora(t, nil) // still answering
	if _, ok := ctl.Alive(n.cfg.PIDFile); !ok {
		t.Fatal("daemon died on malformed packets")
	}
}

func TestNetLeaseSurvivesRestart(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	c := newRawClient(t, n.guest, "eth0")
	ip := addrOf(c.dora(t, nil, withHostname("keeper")).YourIPAddr)
	n.stop()
	ls, err := ctl.Leases(n.cfg.LeaseFile)
	if err != nil || len(ls) != 1 || ls[0].IP != ip || ls[0].Hostname != "keeper" {
		t.Fatalf("lease file after stop: %+v %v", ls, err)
	}
	n.start()
	off, _, err := c.exchange(newReq(t, dhcpv4.MessageTypeDiscover, c.mac))
	if err != nil || addrOf(off.YourIPAddr) != ip {
		t.Errorf("after restart offered %v, want %s (%v)", off, ip, err)
	}
	ack, _, err := c.exchange(newReq(t, dhcpv4.MessageTypeRequest, c.mac, optReqIP(ip)))
	if err != nil || mt(ack) != dhcpv4.MessageTypeAck {
		t.Errorf("init-reboot after restart: %v %v", ack, err)
	}
}

// TestNetUdhcpc checks interoperation with a real client, busybox udhcpc,
// which asks for unicast replies and reads them on a raw socket.
func TestNetUdhcpc(t *testing.T) {
	n, script, out := udhcpcNet(t, "[ \"$1\" = bound ] && echo \"ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain lease=$lease serverid=$serverid\"")
	o, e, err := n.guest.Run("/bin/busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-s", script, "-t", "3", "-T", "1", "-A", "1", "-x", "hostname:bbox")
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s\n%s", err, o, e)
	}
	env, _ := os.ReadFile(out)
	want := "ip=192.168.100.2 subnet=255.255.255.0 router=192.168.100.1 dns=192.168.100.1 domain=kvm lease=3600 serverid=192.168.100.1\n"
	if string(env) != want {
		t.Errorf("udhcpc got\n%s\nwant\n%s", env, want)
	}
	if ip, ok := leaseOf(t, n, "bbox"); !ok || ip.String() != "192.168.100.2" {
		t.Errorf("lease of bbox: %s %v", ip, ok)
	}
}

// TestNetUdhcpcRenew: a bound udhcpc told to renew (SIGUSR1, as at half the
// lease time) sends a REQUEST from its address and keeps it.
func TestNetUdhcpcRenew(t *testing.T) {
	// A renewing client sends from, and is answered at, its address: bound must configure it.
	n, script, out := udhcpcNet(t, "case \"$1\" in\nbound) /bin/busybox ip addr add $ip/$mask dev $interface ;;\nesac\n"+
		"case \"$1\" in bound|renew) echo \"$1 ip=$ip lease=$lease\" ;; esac")
	var stderr testhost.Buffer
	cmd := n.guest.Cmd("/bin/busybox", "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "3", "-T", "1")
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	events := func() string { b, _ := os.ReadFile(out); return string(b) }
	testhost.WaitFor(t, func() bool { return strings.Contains(events(), "bound ") }, &stderr)
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	testhost.WaitFor(t, func() bool { return strings.Contains(events(), "renew ") }, &stderr)
	if want := "bound ip=192.168.100.2 lease=3600\nrenew ip=192.168.100.2 lease=3600\n"; events() != want {
		t.Errorf("udhcpc events:\n%s\nwant\n%s", events(), want)
	}
	// The renew goes unicast; udhcpc 1.35 then sometimes broadcasts it again:
	// it sends from a socket bound to ciaddr:68 and connected to the server,
	// which the kernel prefers for the answer, and closes it unread, so an
	// answer faster than that close is lost. Either way the address is kept.
	if log := stderr.String(); !strings.Contains(log, "sending renew to server 192.168.100.1") {
		t.Errorf("no unicast renew:\n%s", log)
	}
	if b, _ := os.ReadFile(n.logPath()); strings.Count(string(b), `msg="dhcp lease"`) != 1 {
		t.Errorf("daemon log, want one lease line, none for the renewal:\n%s", b)
	}
}

// udhcpcNet starts a daemon on a test network for busybox's udhcpc, and
// writes a udhcpc script that runs body with its stdout appended to out.
func udhcpcNet(t *testing.T, body string) (n *testNet, script, out string) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (busybox-static)")
	}
	n = newTestNet(t, testConfig())
	n.start()
	out = filepath.Join(n.dir, "udhcpc.out")
	script = filepath.Join(n.dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec >> "+out+"\n"+body+"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return n, script, out
}

// leaseOf waits briefly for the lease file to list hostname.
func leaseOf(t testing.TB, n *testNet, hostname string) (netip.Addr, bool) {
	t.Helper()
	for i := 0; i < 50; i++ {
		ls, _ := ctl.Leases(n.cfg.LeaseFile)
		for _, l := range ls {
			if l.Hostname == hostname {
				return l.IP, true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return netip.Addr{}, false
}

// TestNetLogNamesNetworkOnce: every line of the daemon's log names its network
// exactly once.
func TestNetLogNamesNetworkOnce(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	n.stop()
	b, err := os.ReadFile(n.logPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if c := strings.Count(line, "network="); c != 1 {
			t.Errorf("log line names the network %d times: %s", c, line)
		}
	}
}

// TestNetBadLeaseFileSetAside: a corrupt lease file does not stop the daemon:
// it starts with no leases, warns once and keeps the bad file as .corrupt.
func TestNetBadLeaseFileSetAside(t *testing.T) {
	n := newTestNet(t, testConfig())
	bad := []byte(`{"version":1,"leases":[{"ip":"192.168`)
	if err := os.WriteFile(n.cfg.LeaseFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	newRawClient(t, n.guest, "eth0").dora(t, nil)
	if b, err := os.ReadFile(n.cfg.LeaseFile + ".corrupt"); err != nil || string(b) != string(bad) {
		t.Errorf("bad file not kept aside: %q %v", b, err)
	}
	log, _ := os.ReadFile(n.logPath())
	if c := strings.Count(string(log), "lease file unusable"); c != 1 {
		t.Errorf("%d warnings about the lease file, want 1:\n%s", c, log)
	}
}

// TestNetSecondDaemonOnLeaseFile: a second daemon given a lease file in use
// fails at start with a one-line error naming the file.
func TestNetSecondDaemonOnLeaseFile(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := n.cfg
	c.PIDFile = filepath.Join(n.dir, "second.pid")
	cfgPath := filepath.Join(n.dir, "second.json")
	if err := ctl.WriteConfig(cfgPath, c); err != nil {
		t.Fatal(err)
	}
	err = n.host.Do(func() error {
		_, err := spawn(exe, cfgPath, filepath.Join(n.dir, "second.log"))
		return err
	})
	want := "lease file " + c.LeaseFile + ": in use by another netsvc daemon"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("second daemon: %v, want %q", err, want)
	}
}

// TestNetProbeSkipsAddressInUse: a host on the bridge that configured the
// first free address itself, without a lease, answers the daemon's ARP probe,
// and the daemon offers another address and logs why.
func TestNetProbeSkipsAddressInUse(t *testing.T) {
	n := newTestNet(t, testConfig())
	squatter := n.cfg.RangeStart // the address a first client would get
	n.guest.MustRun("ip", "addr", "add", squatter.String()+"/24", "dev", "eth0")
	n.start()
	c := newRawClient(t, n.guest, "eth0")
	got := addrOf(c.dora(t, nil).YourIPAddr)
	if got == squatter {
		t.Fatalf("offered %s, which a host on the bridge uses", got)
	}
	log, _ := os.ReadFile(n.logPath())
	if !strings.Contains(string(log), "address answered an arp probe") || !strings.Contains(string(log), "ip="+squatter.String()) {
		t.Errorf("no log line about %s:\n%s", squatter, log)
	}
}
