package nat

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// The reachability tests build a hypervisor namespace with an uplink to an
// "outside" namespace, bridges made the way kvmnet makes them, and guests as
// namespaces on veth pairs attached to those bridges; they apply only this
// package's rules and probe with TCP. The hypervisor forwards (some NAT network
// is up) and has Docker's FORWARD DROP policy, the worst case for both sides.

const (
	uplinkAddr  = "203.0.113.1" // the hypervisor's own address on its uplink
	outsideAddr = "203.0.113.2" // a host out there
	probePort   = "7777"
	// dialTimeout bounds a probe that gets no answer (a DROP); every other
	// outcome, a refusal included, arrives in a millisecond or two. A probe
	// expected to be dropped waits dropTimeout only, which is still a hundred
	// times what an answer takes here.
	dialTimeout = 2 * time.Second
	dropTimeout = 300 * time.Millisecond
)

// outcome is what a TCP connect met.
type outcome string

const (
	open    outcome = "open"
	refused outcome = "refused" // REJECT with icmp-port-unreachable
	dropped outcome = "dropped" // no answer at all
)

type world struct {
	t       *testing.T
	hv, out *testns.NS
	ports   int
	noDAD   bool // new links' IPv6 addresses usable at once (no duplicate address detection)
}

// newWorld makes the hypervisor and the outside host, both serving the probe port.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, hv: testns.New(t), out: testns.New(t)}
	foreign(t, w.hv)
	w.hv.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	w.hv.MustRun("ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", w.out.Name)
	w.hv.MustRun("ip", "addr", "add", uplinkAddr+"/24", "dev", "up0")
	w.hv.MustRun("ip", "link", "set", "up0", "up")
	w.out.MustRun("ip", "addr", "add", outsideAddr+"/24", "dev", "eth0")
	w.out.MustRun("ip", "link", "set", "eth0", "up")
	serve(t, w.hv)
	serve(t, w.out)
	return w
}

// brNF logs whether bridged traffic crosses iptables here, as it does on the
// machine that runs the test: with it on, guest-to-guest traffic on one bridge
// meets FORWARD.
func (w *world) brNF() {
	v, _, err := w.hv.Run("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil {
		v = "absent (br_netfilter not loaded)"
	}
	w.t.Logf("bridge-nf-call-iptables: %s", strings.TrimSpace(v))
}

// network makes n's bridge as kvmnet does (STP off), with the gateway address
// on it, or, for an isolated network, a route to subnet through it: a
// hypervisor that routes there is the harder case for the rules.
func (w *world) network(n Network, subnet string) {
	w.hv.MustRun("ip", "link", "add", n.Bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	w.hv.MustRun("ip", "link", "set", n.Bridge, "up")
	if n.Gateway.IsValid() {
		w.hv.MustRun("ip", "addr", "add", n.Gateway.String()+"/24", "dev", n.Bridge)
	} else {
		w.hv.MustRun("ip", "route", "add", subnet, "dev", n.Bridge)
	}
}

// guest makes a namespace on a veth attached to n's bridge, with address addr
// and a default route through the gateway, or, on an isolated network, through
// the hypervisor's uplink address, which it answers ARP for on any bridge.
func (w *world) guest(n Network, addr string) *testns.NS {
	g := testns.New(w.t)
	if w.noDAD {
		g.MustRun("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	}
	w.ports++
	hv := fmt.Sprintf("vg%d", w.ports)
	w.hv.MustRun("ip", "link", "add", hv, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	w.hv.MustRun("ip", "link", "set", hv, "master", n.Bridge, "up")
	g.MustRun("ip", "addr", "add", addr+"/24", "dev", "eth0")
	g.MustRun("ip", "link", "set", "eth0", "up")
	if n.Gateway.IsValid() {
		g.MustRun("ip", "route", "add", "default", "via", n.Gateway.String())
	} else {
		g.MustRun("ip", "route", "add", "default", "via", uplinkAddr, "dev", "eth0", "onlink")
	}
	serve(w.t, g)
	return g
}

// serve listens on the probe port on every address of ns and answers each
// connection with the source address it saw.
func serve(t *testing.T, ns *testns.NS) { ns.EchoSource(t, "tcp4", ":"+probePort) }

// dialTo connects from ns to addr (host:port), over its family only, and
// returns the outcome and, when open, the source address the server saw
// (which tells masquerading apart).
func dialTo(t *testing.T, ns *testns.NS, addr string, d net.Dialer) (outcome, string) {
	t.Helper()
	network := "tcp4"
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() {
		network = "tcp6"
	}
	var seen string
	err := ns.Do(func() error {
		c, err := d.Dial(network, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(dialTimeout))
		seen, err = bufio.NewReader(c).ReadString('\n')
		seen = strings.TrimSpace(seen)
		return err
	})
	var ne net.Error
	switch {
	case err == nil:
		return open, seen
	case errors.Is(err, syscall.ECONNREFUSED):
		return refused, ""
	case errors.As(err, &ne) && ne.Timeout():
		return dropped, ""
	}
	t.Fatalf("dial %s from %s: %v", addr, ns.Name, err)
	return "", ""
}

// expect probes from ns to addr and fails t unless the outcome is want.
func expect(t *testing.T, what string, ns *testns.NS, addr string, want outcome) string {
	t.Helper()
	return expectTo(t, what, ns, net.JoinHostPort(addr, probePort), want)
}

// expectTo is expect to any address and port.
func expectTo(t *testing.T, what string, ns *testns.NS, addr string, want outcome) string {
	t.Helper()
	timeout := dialTimeout
	if want == dropped {
		timeout = dropTimeout
	}
	got, seen := dialTo(t, ns, addr, net.Dialer{Timeout: timeout})
	if got != want {
		t.Errorf("%s (%s): %s, want %s", what, addr, got, want)
	}
	return seen
}

// reachNet is network i of a reachability test in mode m.
func reachNet(i int, m Mode) (Network, string) {
	subnet := fmt.Sprintf("10.%d.0.0/24", 50+i)
	n := Network{Name: fmt.Sprintf("net%d", i), Bridge: fmt.Sprintf("kvbr%d", i), Mode: m, Services: m != Isolated}
	if m != Isolated {
		n.Subnet = netip.MustParsePrefix(subnet)
		n.Gateway = netip.MustParseAddr(fmt.Sprintf("10.%d.0.1", 50+i))
	}
	return n, subnet
}

func guestAddr(i, host int) string { return fmt.Sprintf("10.%d.0.%d", 50+i, host) }

// TestReachBetweenNetworks: a guest of one network reaches no guest of another,
// in both directions, for every pair of modes and both start orders (issue 10
// item 1: a NAT network brought up last reached the guests of every network
// brought up before it). The other network's gateway is a host address like
// any other: a NAT guest reaches it, a host-only guest is refused, an isolated
// one dropped.
func TestReachBetweenNetworks(t *testing.T) {
	modes := []Mode{Isolated, HostOnly, NAT}
	for i, m1 := range modes {
		for _, m2 := range modes[i:] {
			for _, order := range []string{"first-up", "last-up"} {
				t.Run(fmt.Sprintf("%s-%s-%s", m1, order, m2), func(t *testing.T) {
					w := newWorld(t)
					x, xs := reachNet(1, m1)
					y, ys := reachNet(2, m2)
					w.network(x, xs)
					w.network(y, ys)
					gx, gy := w.guest(x, guestAddr(1, 10)), w.guest(y, guestAddr(2, 10))
					if order == "first-up" {
						ensure(t, w.hv, x)
						ensure(t, w.hv, y)
					} else {
						ensure(t, w.hv, y)
						ensure(t, w.hv, x)
					}
					expect(t, m1.String()+" guest -> "+m2.String()+" guest", gx, guestAddr(2, 10), refused)
					expect(t, m2.String()+" guest -> "+m1.String()+" guest", gy, guestAddr(1, 10), refused)
					toHost := map[Mode]outcome{Isolated: dropped, HostOnly: refused, NAT: open}
					if y.Gateway.IsValid() {
						expect(t, m1.String()+" guest -> other network's gateway", gx, y.Gateway.String(), toHost[m1])
					}
					if x.Gateway.IsValid() {
						expect(t, m2.String()+" guest -> other network's gateway", gy, x.Gateway.String(), toHost[m2])
					}
				})
			}
		}
	}
}

// TestReachHost: what a guest of each mode reaches: the guests beside it
// always; the gateway when it has one; the hypervisor's uplink address only on
// NAT (isolated: silently dropped, issue 10 item 2; host-only: refused, issue
// 17); the outside only on NAT, masqueraded, with the replies coming back; and
// nothing reaches a guest from outside.
func TestReachHost(t *testing.T) {
	for _, m := range []Mode{Isolated, HostOnly, NAT} {
		t.Run(m.String(), func(t *testing.T) {
			w := newWorld(t)
			w.brNF()
			n, subnet := reachNet(1, m)
			w.network(n, subnet)
			g1, g2 := w.guest(n, guestAddr(1, 10)), w.guest(n, guestAddr(1, 11))
			ensure(t, w.hv, n)
			w.out.MustRun("ip", "route", "add", subnet, "via", uplinkAddr)

			expect(t, "guest -> guest beside it", g1, guestAddr(1, 11), open)
			expect(t, "guest -> guest beside it", g2, guestAddr(1, 10), open)
			want := map[Mode][2]outcome{ // uplink address, outside host

				Isolated: {dropped, refused},
				HostOnly: {refused, refused},
				NAT:      {open, open},
			}[m]
			if m != Isolated {
				expect(t, "guest -> gateway", g1, n.Gateway.String(), open)
			}
			expect(t, "guest -> host's uplink address", g1, uplinkAddr, want[0])
			if seen := expect(t, "guest -> outside", g1, outsideAddr, want[1]); want[1] == open && seen != uplinkAddr {
				t.Errorf("outside saw the guest as %s, want %s (masqueraded)", seen, uplinkAddr)
			}
			expect(t, "outside -> guest", w.out, guestAddr(1, 10), refused)
			if m == Isolated { // the host answers ARP for its addresses on any bridge
				if nb := g1.MustRun("ip", "neigh", "show", uplinkAddr); !strings.Contains(nb, "lladdr") {
					t.Errorf("isolated guest got no ARP answer for the host's uplink address: %q", nb)
				}
			}
			if m == NAT {
				spoofing(t, w, g1, n)
			}
		})
	}
}

// TestReachAllowFrom: a network that allows another's bridge lets that
// network's guests open connections to its guests, in whichever order the two
// came up, and nothing else: its own guests still reach no guest there. From a
// NAT network they arrive masqueraded as the allowing network's gateway.
func TestReachAllowFrom(t *testing.T) {
	for _, order := range []string{"allowing-first", "allowing-last"} {
		for _, m := range []Mode{HostOnly, NAT} {
			t.Run(order+"-from-"+m.String(), func(t *testing.T) {
				w := newWorld(t)
				x, xs := reachNet(1, HostOnly)
				y, ys := reachNet(2, m)
				x.AllowFrom = []string{y.Bridge}
				w.network(x, xs)
				w.network(y, ys)
				gx, gy := w.guest(x, guestAddr(1, 10)), w.guest(y, guestAddr(2, 10))
				if order == "allowing-first" {
					ensure(t, w.hv, x)
					ensure(t, w.hv, y)
				} else {
					ensure(t, w.hv, y)
					ensure(t, w.hv, x)
				}
				// A NAT network masquerades all it sends off its subnet, this too.
				from := map[Mode]string{HostOnly: guestAddr(2, 10), NAT: x.Gateway.String()}[m]
				if seen := expect(t, "allowed guest -> guest", gy, guestAddr(1, 10), open); seen != from {
					t.Errorf("the allowing network's guest saw %s, want %s", seen, from)
				}
				expect(t, "guest -> allowed network's guest", gx, guestAddr(2, 10), refused)
			})
		}
	}
}

// TestIsolatedUplinkBridge shows why an isolated network must not name the
// host's uplink bridge: the host drops everything arriving on it, its LAN's
// traffic included.
func TestIsolatedUplinkBridge(t *testing.T) {
	w := newWorld(t)
	n := Network{Name: "lan", Bridge: "br-lan", Mode: Isolated}
	w.network(n, "198.51.100.0/24")
	w.hv.MustRun("ip", "addr", "add", "198.51.100.1/24", "dev", "br-lan")
	peer := w.guest(n, "198.51.100.2")
	expect(t, "LAN peer -> host before", peer, "198.51.100.1", open)
	ensure(t, w.hv, n)
	expect(t, "LAN peer -> host", peer, "198.51.100.1", dropped)
}

// spoofing: a NAT guest that takes an address outside its subnet sends
// nothing out, though both sides would route the packets and FORWARD's policy
// would accept them. UDP, because for TCP the replies would be refused anyway.
func spoofing(t *testing.T, w *world, g *testns.NS, n Network) {
	const spoofed = "10.99.0.5"
	g.MustRun("ip", "addr", "add", spoofed+"/32", "dev", "eth0")
	w.hv.MustRun("ip", "route", "add", spoofed+"/32", "dev", n.Bridge)
	w.out.MustRun("ip", "route", "add", spoofed+"/32", "via", uplinkAddr)
	w.hv.MustRun("iptables", "-P", "FORWARD", "ACCEPT")
	var pc net.PacketConn
	if err := w.out.Do(func() (err error) { pc, err = net.ListenPacket("udp4", ":"+probePort); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, from := range []string{guestAddr(1, 10), spoofed} {
		err := g.Do(func() error {
			d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}
			c, err := d.Dial("udp4", net.JoinHostPort(outsideAddr, probePort))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte(from))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(dropTimeout))
		buf := make([]byte, 64)
		k, src, err := pc.ReadFrom(buf)
		switch got := string(buf[:k]); {
		case from == spoofed && err == nil:
			t.Errorf("outside got a datagram the guest sent from %s (as %s)", got, src)
		case from != spoofed && (err != nil || got != from):
			t.Errorf("outside got no datagram from the guest's own address: %q, %v", got, err)
		}
	}
}

// TestIPv6NotFiltered pins a limit the README states: kvmnet's rules are IPv4
// only, so a guest of any mode reaches the host's services that listen on IPv6
// through the host's link-local address on the bridge; turning IPv6 off on the
// bridge (net.ipv6.conf.BRIDGE.disable_ipv6=1) closes that.
func TestIPv6NotFiltered(t *testing.T) {
	for _, m := range []Mode{Isolated, HostOnly, NAT} {
		t.Run(m.String(), func(t *testing.T) {
			w := newWorld(t)
			w.noDAD = true
			w.hv.MustRun("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
			n, subnet := reachNet(1, m)
			w.network(n, subnet)
			g := w.guest(n, guestAddr(1, 10))
			ensure(t, w.hv, n)
			var ln net.Listener
			if err := w.hv.Do(func() (err error) { ln, err = net.Listen("tcp6", "[::]:"+probePort); return err }); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for c, err := ln.Accept(); err == nil; c, err = ln.Accept() {
					c.Close()
				}
			}()
			ll := linkLocal(t, w.hv, n.Bridge)
			linkLocal(t, g, "eth0")
			// The zone by index: Go caches interface names process-wide,
			// across the namespaces of this test.
			zone := strings.TrimSuffix(strings.Fields(g.MustRun("ip", "-o", "link", "show", "dev", "eth0"))[0], ":")
			err := g.Do(func() error {
				c, err := net.DialTimeout("tcp6", net.JoinHostPort(ll+"%"+zone, probePort), dialTimeout)
				if err == nil {
					c.Close()
				}
				return err
			})
			if err != nil {
				t.Errorf("guest -> host's link-local %s: %v (if IPv6 is filtered now, update the README's table)", ll, err)
			}
			w.hv.MustRun("sysctl", "-qw", "net.ipv6.conf."+n.Bridge+".disable_ipv6=1")
			err = g.Do(func() error {
				c, err := net.DialTimeout("tcp6", net.JoinHostPort(ll+"%"+zone, probePort), dropTimeout)
				if err == nil {
					c.Close()
				}
				return err
			})
			if err == nil {
				t.Errorf("guest -> host's link-local %s with IPv6 off on %s: open", ll, n.Bridge)
			}
		})
	}
}

// linkLocal waits until dev in ns has a usable (no longer tentative) IPv6
// link-local address, and returns it.
func linkLocal(t *testing.T, ns *testns.NS, dev string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		f := strings.Fields(ns.MustRun("ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link", "-tentative"))
		for i := range f {
			if f[i] == "inet6" && i+1 < len(f) {
				return strings.Split(f[i+1], "/")[0]
			}
		}
	}
	t.Fatalf("%s: no IPv6 link-local address on %s", ns.Name, dev)
	return ""
}
