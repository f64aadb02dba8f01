package netsvc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// ipFor is the address a test upstream gives name: a function of the name,
// so that an answer to another client's question shows.
func ipFor(name string) net.IP {
	var h uint32 = 2166136261
	for _, c := range []byte(strings.ToLower(name)) {
		h = (h ^ uint32(c)) * 16777619
	}
	return net.IPv4(10, byte(h>>16), byte(h>>8), byte(h))
}

// udpUpstream is a hand-made upstream on 127.0.0.1 of a test namespace: for
// each query, behave decides what it sends back.
type udpUpstream struct {
	pc    *net.UDPConn
	addr  string
	asked atomic.Int64
}

// answerTo is the right answer to query q.
func answerTo(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	name := q.Question[0].Name
	m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: ipFor(name)})
	return m
}

// startUDPUpstream serves on a fresh port of 127.0.0.1 in ns; behave gets
// each query and the address it came from (nil behave: answer right away).
func startUDPUpstream(t testing.TB, ns *testns.NS, behave func(u *udpUpstream, q *dns.Msg, from netip.AddrPort)) *udpUpstream {
	return startUDPUpstreamOn(t, ns, "127.0.0.1:0", behave)
}

// startUDPUpstreamOn is startUDPUpstream on addr.
func startUDPUpstreamOn(t testing.TB, ns *testns.NS, addr string, behave func(u *udpUpstream, q *dns.Msg, from netip.AddrPort)) *udpUpstream {
	t.Helper()
	u := &udpUpstream{}
	if err := ns.Do(func() (err error) {
		u.pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	u.addr = u.pc.LocalAddr().String()
	if behave == nil {
		behave = func(u *udpUpstream, q *dns.Msg, from netip.AddrPort) { u.reply(answerTo(q), from) }
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := u.pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			u.asked.Add(1)
			behave(u, q, from)
		}
	}()
	t.Cleanup(func() { u.pc.Close() })
	return u
}

func (u *udpUpstream) reply(m *dns.Msg, to netip.AddrPort) {
	if b, err := m.Pack(); err == nil {
		_, _ = u.pc.WriteToUDPAddrPort(b, to)
	}
}

// TestUpstreamSocketsUnderLoad: 10000 queries in flight at once over one
// upstream's shared sockets, to an upstream that waits until it has them all
// and then sends each a forged answer from another port, an answer to
// another question, and the right answer: every query gets its own answer,
// and the sockets it went through are closed once it is over.
func TestUpstreamSocketsUnderLoad(t *testing.T) {
	const n = 10000
	ns := testns.New(t)
	var forger *net.UDPConn
	if err := ns.Do(func() (err error) {
		forger, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	type held struct {
		q    *dns.Msg
		from netip.AddrPort
	}
	queue := make(chan held, n)
	up := startUDPUpstream(t, ns, func(u *udpUpstream, q *dns.Msg, from netip.AddrPort) { queue <- held{q, from} })
	forceRcvbuf(t, up.pc, 32<<20) // 10000 queries in a burst
	var forged atomic.Int64
	go func() {
		for i := 0; ; i++ {
			h, ok := <-queue
			if !ok {
				return
			}
			for len(queue) < n-1-i && i == 0 { // hold the first until all are in flight
				time.Sleep(10 * time.Millisecond)
			}
			evil := answerTo(h.q)
			evil.Answer[0].(*dns.A).A = net.IPv4(6, 6, 6, 6)
			if b, err := evil.Pack(); err == nil {
				if _, err := forger.WriteToUDPAddrPort(b, h.from); err == nil {
					forged.Add(1)
				}
			}
			other := answerTo(h.q)
			other.Question[0].Name = "other." + h.q.Question[0].Name
			other.Answer[0].(*dns.A).A = net.IPv4(7, 7, 7, 7)
			up.reply(other, h.from)
			up.reply(answerTo(h.q), h.from)
			if i%50 == 49 {
				time.Sleep(time.Millisecond) // leave the readers time: UDP drops what overflows
			}
		}
	}()
	pool := newUDPPool(netip.MustParseAddrPort(up.addr), newUpReader())
	defer pool.close()

	results := make([]chan udpResult, n)
	cancels := make([]func(), n)
	questions := make([]*dns.Msg, n)
	if err := ns.Do(func() error { // the pool's sockets are made in ns
		for i := range n {
			questions[i] = query(fmt.Sprintf("client%d.example", i), dns.TypeA)
			b, _ := questions[i].Pack()
			results[i] = make(chan udpResult, 1)
			var err error
			if cancels[i], err = pool.send(b, questionOf(questions[i]), func(r udpResult) { results[i] <- r }); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var wrong, failed int
	deadline := time.After(20 * time.Second)
	for i := range n {
		select {
		case r := <-results[i]:
			name := questions[i].Question[0].Name
			if r.err != nil {
				failed++
			} else if m := msgOf(r.msg); m == nil || len(m.Answer) != 1 {
				wrong++
			} else if a, ok := m.Answer[0].(*dns.A); !ok || !a.A.Equal(ipFor(name)) || m.Question[0].Name != name {
				wrong++
			}
		case <-deadline:
			failed++
		}
		cancels[i]()
	}
	close(queue)
	if wrong != 0 || failed != 0 {
		t.Errorf("%d of %d queries got another's or a forged answer, %d none", wrong, n, failed)
	}
	if forged.Load() == 0 {
		t.Errorf("the forger sent nothing: the test proves nothing")
	}
	if got := up.asked.Load(); got != n {
		t.Errorf("upstream asked %d times, want %d", got, n)
	}
	// Every socket carried at most sockUses queries, and is closed now
	// that none is in flight, but for those still in the pool.
	open := strings.Count(ns.MustRun("ss", "-uanH", "state", "established", "dst", up.addr), "\n")
	if open > poolSocks {
		t.Errorf("%d upstream sockets open after the queries, want at most %d", open, poolSocks)
	}
}

// forceRcvbuf gives c a receive buffer of size (SO_RCVBUFFORCE: above
// net.core.rmem_max; the tests run as root).
func forceRcvbuf(t testing.TB, c *net.UDPConn, size int) {
	raw, err := c.SyscallConn()
	if err == nil {
		err = raw.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestUpstreamTake: an answer is taken only for the query in flight with its
// ID and question, once.
func TestUpstreamTake(t *testing.T) {
	s := &upSock{pending: map[uint16]*udpWaiter{}}
	q := query("Www.Example", dns.TypeA)
	w := &udpWaiter{q: questionOf(q)}
	s.pending[7] = w
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := answerTo(q)
	a.Id = 8
	if got, _ := s.take(pack(a)); got != nil {
		t.Errorf("answer with another ID taken")
	}
	a.Id = 7
	a.Question[0].Qtype = dns.TypeAAAA
	if got, _ := s.take(pack(a)); got != nil {
		t.Errorf("answer to another type taken")
	}
	a.Question[0].Qtype = dns.TypeA
	a.Response = false
	if got, _ := s.take(pack(a)); got != nil {
		t.Errorf("a query taken as an answer")
	}
	a.Response = true
	a.Question[0].Name = "www.example."
	if got, _ := s.take(pack(a)); got != w {
		t.Errorf("the answer, in another case, not taken")
	}
	if got, _ := s.take(pack(a)); got != nil {
		t.Errorf("an answer taken twice")
	}
	// Bytes that are not letters compare as they are, even those that are
	// not UTF-8 (which strings.EqualFold takes all for the same rune).
	x, y := questionOf(q), questionOf(q)
	x.Name.Data[0], y.Name.Data[0] = 0xfe, 0xff
	if sameQuestion(x, y) {
		t.Errorf("names differing in a byte 0xfe/0xff taken for the same")
	}
}

// FuzzUpstreamAnswer feeds what an upstream (or anyone who can reach the
// socket's port) sends to the matcher: no panic, and nothing taken but the
// answer to the query in flight.
func FuzzUpstreamAnswer(f *testing.F) {
	q := query("web.example", dns.TypeA)
	q.Id = 7
	a := answerTo(q)
	b, _ := a.Pack()
	f.Add(b)
	f.Add(b[:12])
	big, _ := bigUpstream(40)(nil, q, "udp", "")
	if b, err := big.Pack(); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &upSock{pending: map[uint16]*udpWaiter{7: {q: questionOf(q)}}}
		w, a := s.take(b)
		if w == nil {
			return
		}
		// What is passed on reads the same again (records are checked,
		// not their data), and has no OPT record left to drop.
		again, err := parseAnswer(a.b)
		if err != nil || a.hdr.ID != 7 || !a.hdr.Response || !sameQuestion(a.q, questionOf(q)) || !bytes.Equal(again.b, a.b) {
			t.Fatalf("took %q: %v", a.b, err)
		}
		// Passed on to a client that takes 512 bytes: cut to fit if need be.
		r := &dnsQuery{hdr: dnsmessage.Header{ID: 9}}
		out := r.finish(dnsReply{b: append([]byte(nil), a.b...)}, "udp")
		if cut, err := parseAnswer(out); err != nil || len(out) > minUDPSize || cut.hdr.ID != 9 {
			t.Fatalf("passed on as %q: %v", out, err)
		}
	})
}

// serveWith starts n's daemon forwarding to ups, in that order, and gives
// the guest an address to ask from.
func (n *testNet) serveWith(ups ...*udpUpstream) {
	n.t.Helper()
	n.cfg.Upstreams = nil
	for _, u := range ups {
		n.cfg.Upstreams = append(n.cfg.Upstreams, u.addr)
	}
	n.start()
	n.guest.MustRun("ip", "addr", "add", guestSrc.String()+"/24", "dev", "eth0")
}

// timedAsk asks name from the guest and returns the answer's address and
// how long it took.
func timedAsk(t *testing.T, n *testNet, name string) (string, time.Duration) {
	t.Helper()
	t0 := time.Now()
	r := ask(t, n.guest, "udp", "", testGW.String()+":53", name, dns.TypeA)
	return aOf(t, r), time.Since(t0)
}

// TestNetDNSFailoverDeadFirst: a first upstream that drops everything costs
// a query less than a second, and after a few queries it is marked down and
// not asked first any more.
func TestNetDNSFailoverDeadFirst(t *testing.T) {
	n := newTestNet(t, testConfig())
	dead := startUDPUpstream(t, n.host, func(*udpUpstream, *dns.Msg, netip.AddrPort) {})
	good := startUDPUpstream(t, n.host, nil)
	n.serveWith(dead, good)
	for i := range 6 {
		name := fmt.Sprintf("q%d.example", i)
		got, took := timedAsk(t, n, name)
		if got != ipFor(name+".").String() {
			t.Fatalf("%s: %s", name, got)
		}
		if took >= time.Second {
			t.Errorf("query %d took %s with the first upstream dead, want under a second", i, took)
		}
	}
	if dead.asked.Load() > downAfter+1 {
		t.Errorf("the dead upstream was asked %d times in 6 queries; want it set aside after %d", dead.asked.Load(), downAfter)
	}
}

// TestNetDNSFailoverLate: a first upstream answering 1.5 s late: the second
// one's answer reaches the guest within a second, and the late answer, when
// it comes, changes nothing.
func TestNetDNSFailoverLate(t *testing.T) {
	n := newTestNet(t, testConfig())
	late := startUDPUpstream(t, n.host, func(u *udpUpstream, q *dns.Msg, from netip.AddrPort) {
		time.AfterFunc(1500*time.Millisecond, func() {
			m := answerTo(q)
			m.Answer[0].(*dns.A).A = net.IPv4(9, 9, 9, 9)
			u.reply(m, from)
		})
	})
	good := startUDPUpstream(t, n.host, nil)
	n.serveWith(late, good)
	got, took := timedAsk(t, n, "late.example")
	if got != ipFor("late.example.").String() || took >= time.Second {
		t.Errorf("with a late first upstream: %s after %s, want %s within a second", got, took, ipFor("late.example."))
	}
	time.Sleep(time.Second) // the late answer arrives, to a query that is over
	if got, _ := timedAsk(t, n, "after.example"); got != ipFor("after.example.").String() {
		t.Errorf("after the late answer: %s", got)
	}
}

// TestNetDNSClosedPortFailover: an upstream whose port is closed answers
// with ICMP port unreachable: the next upstream is asked at once.
func TestNetDNSClosedPortFailover(t *testing.T) {
	n := newTestNet(t, testConfig())
	good := startUDPUpstream(t, n.host, nil)
	n.cfg.Upstreams = []string{"127.0.0.1:1", good.addr}
	n.start()
	n.guest.MustRun("ip", "addr", "add", guestSrc.String()+"/24", "dev", "eth0")
	// Without the ICMP error, the hedge delay of an upstream never heard
	// from (maxHedge/2) would pass first.
	if got, took := timedAsk(t, n, "closed.example"); got != ipFor("closed.example.").String() || took >= maxHedge/2-100*time.Millisecond {
		t.Errorf("closed first upstream: %s after %s, want the answer before the hedge delay", got, took)
	}
}

// TestNetDNSNoCrossTalk: 500 guests' queries at once through the daemon,
// each for its own name, to an upstream that also sends answers to other
// questions first: each gets its own answer.
func TestNetDNSNoCrossTalk(t *testing.T) {
	n := newTestNet(t, testConfig())
	up := startUDPUpstream(t, n.host, func(u *udpUpstream, q *dns.Msg, from netip.AddrPort) {
		other := answerTo(q)
		other.Question[0].Name = "x" + q.Question[0].Name
		u.reply(other, from)
		u.reply(answerTo(q), from)
	})
	n.serveWith(up)
	const clients = 500
	conns := make([]*net.UDPConn, clients)
	if err := n.guest.Do(func() error {
		for i := range conns {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: testGW.AsSlice(), Port: 53})
			if err != nil {
				return err
			}
			conns[i] = c
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var bad atomic.Int64
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			name := fmt.Sprintf("guest%d.example.", i)
			b, _ := query(name, dns.TypeA).Pack()
			buf := make([]byte, 1500)
			for try := 0; try < 3; try++ { // UDP: a lost datagram is the guest's to resend
				_, _ = c.Write(b)
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				k, err := c.Read(buf)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					continue
				}
				m := new(dns.Msg)
				if err != nil || m.Unpack(buf[:k]) != nil || len(m.Answer) != 1 || !m.Answer[0].(*dns.A).A.Equal(ipFor(name)) {
					bad.Add(1)
				}
				return
			}
			bad.Add(1)
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of %d guests got a wrong answer or none", bad.Load(), clients)
	}
}

// TestNetDNSResolvConfFollowed: with no upstream configured, the daemon
// forwards to the nameservers of its namespace's resolv.conf
// (/etc/netns/NAME/resolv.conf, as `ip netns exec` sees it), and to new ones
// a second after the file is replaced, without a restart.
func TestNetDNSResolvConfFollowed(t *testing.T) {
	n := newTestNet(t, testConfig())
	first := startUDPUpstreamOn(t, n.host, "127.0.0.2:53", nil)
	second := startUDPUpstreamOn(t, n.host, "127.0.0.3:53", nil)
	resolv := filepath.Join(etcNetns(t, n.host), "resolv.conf")
	write := func(server string) {
		tmp := resolv + ".new"
		if err := os.WriteFile(tmp, []byte("nameserver "+server+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, resolv); err != nil {
			t.Fatal(err)
		}
	}
	write("127.0.0.2")
	n.start()
	n.guest.MustRun("ip", "addr", "add", guestSrc.String()+"/24", "dev", "eth0")
	if got, _ := timedAsk(t, n, "one.example"); got != ipFor("one.example.").String() || first.asked.Load() != 1 {
		t.Fatalf("first upstream: %s, asked %d times", got, first.asked.Load())
	}
	write("127.0.0.3")
	time.Sleep(resolvCheckEvery + 100*time.Millisecond)
	if got, _ := timedAsk(t, n, "two.example"); got != ipFor("two.example.").String() || second.asked.Load() != 1 || first.asked.Load() != 1 {
		t.Errorf("after resolv.conf changed: %s; first asked %d times, second %d; want the second once",
			got, first.asked.Load(), second.asked.Load())
	}
	// In place, as an editor without rename writes it.
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(resolvCheckEvery + 100*time.Millisecond)
	if timedAsk(t, n, "three.example"); first.asked.Load() != 2 {
		t.Errorf("after resolv.conf was rewritten in place: first upstream asked %d times, want 2", first.asked.Load())
	}
	if logs, _ := os.ReadFile(n.logPath()); !strings.Contains(string(logs), resolv+" changed") {
		t.Errorf("no log line of the change:\n%s", logs)
	}
}

// TestUpstreamSameSource: the source check ignores zones and IPv4 mapping,
// nothing else.
func TestUpstreamSameSource(t *testing.T) {
	for _, c := range []struct {
		from, up string
		same     bool
	}{
		{"192.0.2.1:53", "192.0.2.1:53", true},
		{"[::ffff:192.0.2.1]:53", "192.0.2.1:53", true},
		{"[fe80::1%eth0]:53", "[fe80::1%2]:53", true},
		{"192.0.2.1:5353", "192.0.2.1:53", false},
		{"192.0.2.2:53", "192.0.2.1:53", false},
		{"[fe80::2%eth0]:53", "[fe80::1%eth0]:53", false},
	} {
		if got := sameSource(netip.MustParseAddrPort(c.from), netip.MustParseAddrPort(c.up)); got != c.same {
			t.Errorf("sameSource(%s, %s) = %v", c.from, c.up, got)
		}
	}
}

// TestUpstreamSetKeepsHealth: when resolv.conf changes, an upstream that
// stays keeps what is known of it (here: that it is down), a new one starts
// fresh, and a down one is asked last.
func TestUpstreamSetKeepsHealth(t *testing.T) {
	s := newUpstreamSet([]string{"192.0.2.1:53", "192.0.2.2:53"}, nil)
	now := time.Now()
	first := (*s.list.Load())[0]
	for range downAfter {
		first.failed(now)
	}
	if got := s.order(now); got[0].addr != "192.0.2.2:53" || got[1] != first {
		t.Errorf("a down upstream is not asked last: %s %s", got[0].addr, got[1].addr)
	}
	s.set([]string{"192.0.2.3:53", "192.0.2.1:53"})
	l := *s.list.Load()
	if l[1] != first || !l[1].down(now) || l[0].down(now) || len(l) != 2 {
		t.Errorf("after the change: %v", s.addrs())
	}
	if got := s.order(now.Add(maxDown)); got[0].addr != "192.0.2.3:53" || got[1] != first {
		t.Errorf("order after the backoff: %s %s, want resolv.conf's", got[0].addr, got[1].addr)
	}
}

// TestResolvConfPathOfNamedNamespace: a daemon in a namespace that `ip netns`
// named reads /etc/netns/NAME/resolv.conf when there is one, else
// /etc/resolv.conf.
func TestResolvConfPathOfNamedNamespace(t *testing.T) {
	ns := testns.New(t)
	var got string
	ns.Do(func() error { got = resolvConfPath(); return nil })
	if got != "/etc/resolv.conf" {
		t.Errorf("without /etc/netns/%s/resolv.conf: %s", ns.Name, got)
	}
	dir := etcNetns(t, ns)
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Do(func() error { got = resolvConfPath(); return nil })
	if want := filepath.Join(dir, "resolv.conf"); got != want {
		t.Errorf("with it: %s, want %s", got, want)
	}
}

// TestUpstreamSocketsCloseWhenIdle: sockLife after its last query, an
// upstream holds no socket: an idle daemon keeps no port open, and the next
// query gets a fresh one.
func TestUpstreamSocketsCloseWhenIdle(t *testing.T) {
	ns := testns.New(t)
	up := startUDPUpstream(t, ns, nil)
	pool := newUDPPool(netip.MustParseAddrPort(up.addr), newUpReader())
	defer pool.close()
	open := func() int {
		return strings.Count(ns.MustRun("ss", "-uanH", "state", "established", "dst", up.addr), "\n")
	}
	q := query("idle.example", dns.TypeA)
	b, _ := q.Pack()
	got := make(chan udpResult, 1)
	var cancel func()
	if err := ns.Do(func() (err error) {
		cancel, err = pool.send(b, questionOf(q), func(r udpResult) { got <- r })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil {
		t.Fatal(r.err)
	}
	cancel()
	if n := open(); n != 1 {
		t.Fatalf("%d sockets after one query, want 1", n)
	}
	time.Sleep(sockLife + 500*time.Millisecond)
	if n := open(); n != 0 {
		t.Errorf("%d sockets open %s after the last query, want none", n, sockLife)
	}
}

// TestUpstreamHedge: the hedge delay follows the round-trip time, shrinks
// with failures, and stays within minHedge and maxHedge.
func TestUpstreamHedge(t *testing.T) {
	u := newUpstream("192.0.2.1:53", nil)
	if d := u.hedge(); d != maxHedge/2 {
		t.Errorf("never answered: %s, want %s", d, maxHedge/2)
	}
	u.answered(50 * time.Millisecond)
	if d := u.hedge(); d != 400*time.Millisecond {
		t.Errorf("50 ms RTT: %s, want 400ms", d)
	}
	u.answered(time.Millisecond) // smoothed: (7*50+1)/8 ms
	u.failed(time.Now())
	if d := u.hedge(); d != 8*(350*time.Millisecond+time.Millisecond)/8/2 {
		t.Errorf("after a failure: %s", d)
	}
	u.answered(10 * time.Second)
	if d := u.hedge(); d != maxHedge {
		t.Errorf("slow upstream: %s, want %s", d, maxHedge)
	}
	for range 60 { // the smoothed RTT forgets the slow answers
		u.answered(time.Microsecond)
	}
	if d := u.hedge(); d != minHedge {
		t.Errorf("fast upstream: %s, want %s", d, minHedge)
	}
}

// etcNetns makes /etc/netns/NAME for ns, where `ip netns exec` finds the
// namespace's own /etc files, and removes it when t ends, with /etc/netns if
// it made that too.
func etcNetns(t *testing.T, ns *testns.NS) string {
	t.Helper()
	_, err := os.Stat("/etc/netns")
	madeTop := os.IsNotExist(err)
	dir := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		if madeTop {
			os.Remove("/etc/netns") // only if empty: another test may use it
		}
	})
	return dir
}
