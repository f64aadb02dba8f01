package netsvc

import (
	"bufio"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/miekg/dns"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// median of ds in milliseconds.
func medianMS(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[len(ds)/2].Microseconds()) / 1000
}

// benchNet starts a daemon on a /21 (room for 1000+ clients) for benchmarks:
// the built kvmnet-netsvc when there is one (daemonBinary).
func benchNet(b *testing.B) (*testNet, *rawClient) {
	c := Config{
		Network: "bench", Bridge: "br0", Gateway: netip.MustParsePrefix("10.77.0.1/21"), DHCP: true, DNS: true,
		Hosts: []Host{{MAC: testStatic.MAC, IP: netip.MustParseAddr("10.77.0.99"), Name: "fixed"}},
	}
	c.Defaults()
	n := newTestNet(b, c)
	n.exe = daemonBinary(b)
	n.start()
	return n, newRawClient(b, n.guest, "eth0")
}

// BenchmarkDHCPDiscoverOffer: DISCOVER to OFFER round trip on a veth,
// unicast reply to the client's MAC as for a real guest.
func BenchmarkDHCPDiscoverOffer(b *testing.B) {
	_, c := benchNet(b)
	c.dora(b, nil)
	var ds []time.Duration
	for b.Loop() {
		m := newReq(b, dhcpv4.MessageTypeDiscover, c.mac)
		t0 := time.Now()
		if _, _, err := c.exchange(m); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.ReportMetric(medianMS(ds), "ms-median")
}

// BenchmarkDHCPRequestAck: REQUEST (selecting) to ACK round trip, which
// includes committing the lease.
func BenchmarkDHCPRequestAck(b *testing.B) {
	_, c := benchNet(b)
	ip := addrOf(c.dora(b, nil).YourIPAddr)
	gw := netip.MustParseAddr("10.77.0.1")
	var ds []time.Duration
	for b.Loop() {
		m := newReq(b, dhcpv4.MessageTypeRequest, c.mac, optReqIP(ip), optServerID(gw))
		t0 := time.Now()
		ack, _, err := c.exchange(m)
		if err != nil || mt(ack) != dhcpv4.MessageTypeAck {
			b.Fatalf("%v %v", ack, err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.ReportMetric(medianMS(ds), "ms-median")
}

// lease1000 runs a full DORA for 1000 simulated clients, one after another.
func lease1000(b *testing.B, c *rawClient, base int) {
	for i := 0; i < 1000; i++ {
		c.dora(b, macN(base+i), dhcpv4.WithBroadcast(true))
	}
}

// BenchmarkDHCP1000Clients: total time to lease 1000 distinct clients on a
// fresh daemon (restarted with an empty lease file between rounds).
func BenchmarkDHCP1000Clients(b *testing.B) {
	n, c := benchNet(b)
	var total time.Duration
	rounds := 0
	for b.Loop() {
		t0 := time.Now()
		lease1000(b, c, 0)
		total += time.Since(t0)
		rounds++
		b.StopTimer()
		n.stop()
		os.Remove(n.cfg.LeaseFile)
		n.start()
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(rounds), "s/1000-clients")
}

// BenchmarkDNSGuestName: a guest resolving another guest's name over UDP.
func BenchmarkDNSGuestName(b *testing.B) {
	n, _ := benchNet(b)
	n.guest.MustRun("ip", "addr", "add", "10.77.1.50/21", "dev", "eth0")
	var conn *dns.Conn
	err := n.guest.Do(func() error {
		var err error
		conn, err = dns.Dial("udp", "10.77.0.1:53") // the socket stays in the guest namespace
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cl := &dns.Client{Timeout: time.Second}
	q := query("fixed.kvm", dns.TypeA)
	var ds []time.Duration
	for b.Loop() {
		t0 := time.Now()
		r, _, err := cl.ExchangeWithConn(q, conn)
		if err != nil || len(r.Answer) != 1 {
			b.Fatalf("%v %v", r, err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.ReportMetric(medianMS(ds), "ms-median")
}

// BenchmarkDaemonRSS1000Leases: the daemon's resident memory once 1000
// clients hold leases (and the lease file has been written).
func BenchmarkDaemonRSS1000Leases(b *testing.B) {
	n, c := benchNet(b)
	lease1000(b, c, 0)
	time.Sleep(2 * flushDelay)
	if ls, err := ctl.Leases(n.cfg.LeaseFile); err != nil || len(ls) != 1000 {
		b.Fatalf("%d leases on disk: %v", len(ls), err)
	}
	var rss float64
	for b.Loop() {
		rss = statusKB(b, n.pid, "VmRSS") / 1024
	}
	b.ReportMetric(rss, "MB-rss")
	b.ReportMetric(statusKB(b, n.pid, "RssAnon")/1024, "MB-anon")
	b.ReportMetric(statusKB(b, n.pid, "VmHWM")/1024, "MB-peak-rss")
}

// statusKB reads a "kB" field of /proc/PID/status.
func statusKB(b *testing.B, pid int, field string) float64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb
		}
	}
	b.Fatalf("no %s in status", field)
	return 0
}
