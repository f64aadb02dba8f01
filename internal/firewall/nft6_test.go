package firewall

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

func with6(n Network, gw6 string) Network {
	n.Gateway6 = netip.MustParsePrefix(gw6)
	return n
}

// withForwards6 gives n, beside its IPv4 forwards, the same three over IPv6
// (the host address one 2001:db8::2).
func withForwards6(n Network) Network {
	g := netip.MustParseAddr("fd00:6b76:6d6e::5")
	n.Forwards = slices.Concat(n.Forwards, []PortForward{
		{Proto: "tcp", First: 8080, Last: 8080, Guest: g, GuestPort: 80},
		{Proto: "udp", HostIP: netip.MustParseAddr("2001:db8::2"), First: 5000, Last: 5002, Guest: g, GuestPort: 6000},
		{Proto: "tcp", First: 9000, Last: 9009, Guest: g.Next(), GuestPort: 9000},
	})
	return n
}

var fixtures6 = []fixture{
	{"nft-nat-services-ipv6", with6(fixtures[0].n, "fd00:6b76:6d6e::1/64")},
	{"nft-nat-ipv6", with6(fixtures[1].n, "fd00:6b76:6d6e::1/64")},
	{"nft-hostonly-services-ipv6", with6(fixtures[2].n, "fd00:6b76:6d6f::1/64")},
	{"nft-hostonly-ipv6", with6(fixtures[3].n, "fd00:6b76:6d6f::1/64")},
	{"nft-nat-forwards-ipv6", withForwards6(with6(fixtures[5].n, "fd00:6b76:6d6e::1/64"))},
}

// TestNFTGoldenIPv6 is TestNFTGolden for networks with an IPv6 prefix: the
// same chains carry their IPv6 rules.
func TestNFTGoldenIPv6(t *testing.T) { goldenRoundTrip(t, fixtures6) }

// TestNFTReachIPv6: over IPv6, with ip6tables-nft's FORWARD and INPUT
// policies DROP (the shim's case), a NAT guest reaches the guest beside it
// and the outside (masqueraded), which needs neighbour discovery with the
// host on the bridge through the INPUT shim; the host's own addresses are
// as its INPUT policy says (dropped), except that a host-only guest is
// refused all but the gateway; neither network's guests reach the other's,
// whichever came up first; Remove leaves ip6tables as it was.
func TestNFTReachIPv6(t *testing.T) {
	for _, order := range []string{"nat-first", "hostonly-first"} {
		t.Run(order, func(t *testing.T) {
			hv, out := testns.New(t), testns.New(t)
			for _, ns := range []*testns.NS{hv, out} {
				ns.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.accept_dad=0")
			}
			hv.MustRun("ip6tables-nft", "-P", "FORWARD", "DROP")
			hv.MustRun("ip6tables-nft", "-P", "INPUT", "DROP")
			hv.MustRun("ip6tables-nft", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
			// The host's own neighbour discovery on its uplink; on the bridges, only kvmnet's shim lets it in.
			hv.MustRun("ip6tables-nft", "-A", "INPUT", "-i", "up0", "-p", "ipv6-icmp", "-j", "ACCEPT")
			saved := strings.TrimSpace(saveNoise.ReplaceAllString(hv.MustRun("ip6tables-nft-save"), ""))
			hv.MustRun("ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", out.Name)
			hv.MustRun("ip", "addr", "add", "2001:db8:1::1/64", "dev", "up0", "nodad")
			hv.MustRun("ip", "link", "set", "up0", "up")
			out.MustRun("ip", "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
			out.MustRun("ip", "link", "set", "eth0", "up")
			out.MustRun("ip", "-6", "route", "add", "fd00::/16", "via", "2001:db8:1::1")
			x, y := with6(netA, "fd00:10::1/64"), with6(netB, "fd00:20::1/64")
			gx := guest6On(t, hv, x, "10.10.0.10", "fd00:10::10")
			gx2 := guest6On(t, hv, x, "10.10.0.11", "fd00:10::11")
			gy := guest6On(t, hv, y, "10.20.0.10", "fd00:20::10")
			for _, ns := range []*testns.NS{hv, out, gx2, gy} {
				serve6(t, ns)
			}
			if order == "nat-first" {
				ensure(t, hv, x)
				ensure(t, hv, y)
			} else {
				ensure(t, hv, y)
				ensure(t, hv, x)
			}
			reach6(t, "nat guest -> guest beside it", gx, "fd00:10::11", "open")
			// The host's INPUT policy has the last word on its own addresses (kvmnet accepts only its services).
			reach6(t, "nat guest -> gateway", gx, "fd00:10::1", "dropped")
			reach6(t, "nat guest -> host's uplink", gx, "2001:db8:1::1", "dropped")
			if seen := reach6(t, "nat guest -> outside", gx, "2001:db8:1::2", "open"); seen != "2001:db8:1::1" {
				t.Errorf("outside saw the nat guest as %q, want 2001:db8:1::1 (masqueraded)", seen)
			}
			reach6(t, "hostonly guest -> gateway", gy, "fd00:20::1", "dropped")
			reach6(t, "hostonly guest -> host's uplink", gy, "2001:db8:1::1", "refused")
			reach6(t, "hostonly guest -> outside", gy, "2001:db8:1::2", "refused")
			reach6(t, "nat guest -> hostonly guest", gx, "fd00:20::10", "refused")
			reach6(t, "hostonly guest -> nat guest", gy, "fd00:10::11", "refused")
			reach6(t, "outside -> nat guest", out, "fd00:10::11", "refused")
			remove(t, hv, x)
			remove(t, hv, y)
			if got := strings.TrimSpace(saveNoise.ReplaceAllString(hv.MustRun("ip6tables-nft-save"), "")); got != saved {
				t.Errorf("ip6tables-nft-save after Remove:\n%s\nwant:\n%s", got, saved)
			}
		})
	}
}

// guest6On is guestOn with an IPv6 address in n's prefix and a default route via its gateway.
func guest6On(t *testing.T, hv *testns.NS, n Network, addr4, addr6 string) *testns.NS {
	t.Helper()
	if _, _, err := hv.Run("ip", "link", "show", n.Bridge); err != nil {
		hv.MustRun("ip", "link", "add", n.Bridge, "type", "bridge")
		hv.MustRun("ip", "addr", "add", n.Gateway.String(), "dev", n.Bridge)
		hv.MustRun("ip", "addr", "add", n.Gateway6.String(), "dev", n.Bridge, "nodad")
		hv.MustRun("ip", "link", "set", n.Bridge, "up")
	}
	g := testns.New(t)
	port := "p-" + strings.ReplaceAll(addr6, ":", "")[4:]
	hv.MustRun("ip", "link", "add", port, "master", n.Bridge, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	hv.MustRun("ip", "link", "set", port, "up")
	g.MustRun("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.eth0.accept_dad=0")
	g.MustRun("ip", "addr", "add", addr4+"/24", "dev", "eth0")
	g.MustRun("ip", "addr", "add", addr6+"/64", "dev", "eth0", "nodad")
	g.MustRun("ip", "link", "set", "eth0", "up")
	g.MustRun("ip", "-6", "route", "add", "default", "via", n.Gateway6.Addr().String())
	return g
}

const probe6 = "7777"

// serve6 answers every TCP connection to port 7777 on ns's IPv6 addresses with the source it saw.
func serve6(t *testing.T, ns *testns.NS) { ns.EchoSource(t, "tcp6", "[::]:"+probe6) }

// reach6 connects from ns to addr and fails t unless the outcome (open,
// refused, dropped) is want; it returns what the server saw when open.
func reach6(t *testing.T, what string, ns *testns.NS, addr, want string) string {
	t.Helper()
	var seen string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp6", net.JoinHostPort(addr, probe6), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		seen, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	got := "open"
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, syscall.ECONNREFUSED):
		got = "refused"
	case errors.As(err, &ne) && ne.Timeout():
		got = "dropped"
	default:
		got = err.Error()
	}
	if got != want {
		t.Errorf("%s (%s): %s, want %s", what, addr, got, want)
	}
	return strings.TrimSpace(seen)
}
