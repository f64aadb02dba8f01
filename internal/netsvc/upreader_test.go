package netsvc

import (
	"net/netip"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// TestUpReaderFollowsLoop: upstream answers are read by the fallback while
// no serving loop runs, only through the loop's epoll set once one is
// attached (the fallback no longer takes them), and by the fallback again
// once the loop leaves.
func TestUpReaderFollowsLoop(t *testing.T) {
	ns := testns.New(t)
	up := startUDPUpstream(t, ns, nil)
	rd := newUpReader()
	pool := newUDPPool(netip.MustParseAddrPort(up.addr), rd)
	defer pool.close()
	ask := func(name string) chan udpResult {
		t.Helper()
		q := query(name, dns.TypeA)
		b, _ := q.Pack()
		got := make(chan udpResult, 1)
		if err := ns.Do(func() error {
			_, err := pool.send(b, questionOf(q), func(r udpResult) { got <- r })
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	answered := func(got chan udpResult, within time.Duration) bool {
		select {
		case r := <-got:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return true
		case <-time.After(within):
			return false
		}
	}
	if !answered(ask("before.example"), 2*time.Second) {
		t.Fatal("no loop: the fallback delivered no answer")
	}

	lep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lep)
	rd.attach(lep)
	got := ask("loop.example")
	if answered(got, 300*time.Millisecond) {
		t.Fatal("a loop is attached, yet another reader delivered the answer")
	}
	var evs [2]unix.EpollEvent
	n, err := unix.EpollWait(lep, evs[:], 2000)
	if err != nil || n != 1 {
		t.Fatalf("loop's epoll: %d events, %v; want the upstream set readable", n, err)
	}
	rd.drain(make([]byte, maxUpstreamUDP))
	if !answered(got, time.Second) {
		t.Fatal("the loop's drain delivered no answer")
	}

	rd.detach(lep)
	if !answered(ask("after.example"), 2*time.Second) {
		t.Fatal("loop gone: the fallback delivered no answer")
	}
}
