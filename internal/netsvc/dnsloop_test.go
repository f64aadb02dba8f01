package netsvc

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// loopOn binds udp 192.168.100.1:53 in a namespace of the test's own (as
// ctl.Bind does: non-blocking) and returns its loop, not yet serving.
func loopOn(t *testing.T) (*testns.NS, *udpLoop) {
	t.Helper()
	ns := testns.New(t)
	ns.MustRun("ip", "link", "set", "lo", "up")
	ns.MustRun("ip", "addr", "add", "192.168.100.1/24", "dev", "lo")
	ns.MustRun("ip", "addr", "add", "192.168.100.50/24", "dev", "lo")
	var l *udpLoop
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "dns")
		defer f.Close()
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 53, Addr: [4]byte{192, 168, 100, 1}}); err != nil {
			return err
		}
		l, err = newUDPLoop(f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns, l
}

// guestSocket is a client socket from the guest's address.
func guestSocket(t *testing.T, ns *testns.NS) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 168, 100, 50)}, &net.UDPAddr{IP: net.IPv4(192, 168, 100, 1), Port: 53})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readAnswer(t *testing.T, c *net.UDPConn) *dns.Msg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUDPLoopBurstForwardAndStop: queries queued before the loop reads (more
// than one recvmmsg takes) are each answered to their own client; a datagram
// longer than maxQuery is dropped without stopping the loop; a forwarded
// answer goes out from the upstream's goroutine; closing wakes the loop
// blocked in recvmmsg, and a late forwarded answer is not written to the
// closed descriptor.
func TestUDPLoopBurstForwardAndStop(t *testing.T) {
	ns, l := loopOn(t)
	d, ip := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	big := guestSocket(t, ns)
	if _, err := big.Write(make([]byte, maxQuery+100)); err != nil {
		t.Fatal(err)
	}
	clients := make([]*net.UDPConn, 3*udpBatch+1)
	for i := range clients {
		clients[i] = guestSocket(t, ns)
		q := query("web.kvm", dns.TypeA)
		q.Id = uint16(1000 + i)
		b, _ := q.Pack()
		if _, err := clients[i].Write(b); err != nil {
			t.Fatal(err)
		}
	}
	served := make(chan error, 1)
	go func() { served <- d.serveUDP(l) }()
	for i, c := range clients {
		m := readAnswer(t, c)
		if m.Id != uint16(1000+i) {
			t.Errorf("client %d got the answer to query %d", i, m.Id-1000)
		}
		if got := aOf(t, m); got != ip.String() {
			t.Errorf("client %d: web.kvm is %s, want %s", i, got, ip)
		}
	}
	fwd := guestSocket(t, ns)
	b, _ := query("example.com", dns.TypeA).Pack()
	if _, err := fwd.Write(b); err != nil {
		t.Fatal(err)
	}
	if got := aOf(t, readAnswer(t, fwd)); got != "203.0.113.7" {
		t.Errorf("example.com is %s, want the upstream's 203.0.113.7", got)
	}

	time.Sleep(50 * time.Millisecond) // the loop is blocked in recvmmsg
	closed := make(chan struct{})
	go func() { l.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not wake the loop blocked in recvmmsg")
	}
	if err := <-served; err != nil {
		t.Errorf("serveUDP: %v", err)
	}
	if err := l.writeTo([]byte("late"), &udpPeer{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v, want net.ErrClosed", err)
	}
	l.close() // twice: Server.close may follow a failed open
}

// TestUDPLoopClosedBeforeServing: a loop closed before it serves (the
// daemon stopping while it starts) returns at once.
func TestUDPLoopClosedBeforeServing(t *testing.T) {
	_, l := loopOn(t)
	d, _ := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	l.close()
	if err := d.serveUDP(l); err != nil {
		t.Errorf("serveUDP on a closed loop: %v", err)
	}
}
