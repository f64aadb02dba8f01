package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// The IPv6 side of the world, made by the test itself (world.sh is IPv4):
//
//	[FAR ns] eth0 2001:db8:2::80 ── [OUT ns] 2001:db8:2::1 | 2001:db8:1::1 ── uplink0 2001:db8:1::2 [HOST ns]
//
// FAR has IPv6 only and serves HTTP on [2001:db8:2::80]:80, answering
// "kvmnet-far saw [SRC]". HOST's IPv6 default route goes via OUT.
const (
	farIP6    = "2001:db8:2::80"
	uplinkIP6 = "2001:db8:1::2"
	prefix6   = "fd00:6b76:6d6e::"
	gateway6  = prefix6 + "1"
)

func (w *world) addIPv6(t *testing.T) {
	t.Helper()
	far := testns.New(t)
	w.out.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	w.out.MustRun("ip", "link", "add", "far0", "type", "veth", "peer", "name", "eth0", "netns", far.Name)
	for _, ns := range []*testns.NS{w.out, far} {
		dev := map[*testns.NS]string{w.out: "far0", far: "eth0"}[ns]
		ns.MustRun("ip", "link", "set", dev, "addrgenmode", "none")
		ns.MustRun("ip", "link", "set", dev, "up")
	}
	// Link-local addresses by hand (the world's links make none): a router
	// solicits a neighbour for a packet it forwards from its link-local address.
	w.out.MustRun("ip", "addr", "add", "fe80::1/64", "dev", "eth0", "nodad")
	w.out.MustRun("ip", "addr", "add", "fe80::1/64", "dev", "far0", "nodad")
	far.MustRun("ip", "addr", "add", "fe80::80/64", "dev", "eth0", "nodad")
	w.host.MustRun("ip", "addr", "add", "fe80::2/64", "dev", "uplink0", "nodad")
	w.out.MustRun("ip", "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad")
	w.out.MustRun("ip", "addr", "add", "2001:db8:2::1/64", "dev", "far0", "nodad")
	far.MustRun("ip", "addr", "add", farIP6+"/64", "dev", "eth0", "nodad")
	far.MustRun("ip", "route", "add", "default", "via", "2001:db8:2::1")
	w.host.MustRun("ip", "addr", "add", uplinkIP6+"/64", "dev", "uplink0", "nodad")
	w.host.MustRun("ip", "route", "add", "default", "via", "2001:db8:1::1")

	dir := t.TempDir()
	cgi := filepath.Join(dir, "cgi-bin", "index.cgi")
	if err := os.MkdirAll(filepath.Dir(cgi), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"kvmnet-far saw $REMOTE_ADDR\"\n"
	if err := os.WriteFile(cgi, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	httpd := far.Cmd("busybox", "httpd", "-f", "-p", "["+farIP6+"]:80", "-h", dir)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpd.Process.Kill(); httpd.Wait() })
	// Reachable from the hypervisor before any guest, once httpd listens.
	testhost.WaitFor(t, func() bool {
		_, _, err := w.host.Run("busybox", "nc", "-w", "2", farIP6, "80")
		return err == nil
	}, &testhost.Buffer{})
	w.before = w.snap()
}

// snapshot6 is the IPv6 state a network may change and must give back.
type snapshot6 struct{ ip6tables, forwarding, acceptRA, routes string }

func (w *world) snap6() snapshot6 {
	routes := strings.Split(strings.TrimSpace(w.host.MustRun("ip", "-6", "route", "show", "table", "all")), "\n")
	for i := range routes {
		routes[i] = spaces.ReplaceAllString(strings.TrimSpace(routes[i]), " ")
	}
	sort.Strings(routes)
	return snapshot6{
		ip6tables:  normIptables(w.host.Ip6tablesSave()),
		forwarding: w.host.Sysctl("net.ipv6.conf.all.forwarding"),
		acceptRA:   w.host.Sysctl("net.ipv6.conf.uplink0.accept_ra"),
		routes:     strings.Join(routes, "\n"),
	}
}

// TestNATIPv6: a booted guest on the default NAT network with address6 gets,
// from kvmnet's router advertisements alone, a SLAAC address in the prefix and
// an IPv6 default route, and fetches from a host that has IPv6 only,
// masqueraded behind the hypervisor's uplink address; DHCPv4 works beside it;
// the forwarder answers the guest's name with its SLAAC address (AAAA); and
// after the guest is gone, IPv6 forwarding, ip6tables, links and routes are as before.
func TestNATIPv6(t *testing.T) { matrix(t, testNATIPv6) }

func testNATIPv6(t *testing.T, fw string) {
	t.Parallel()
	w := newWorld(t, fwConf(fw)+"[network.default]\naddress6 = \""+gateway6+"/64\"\n")
	w.addIPv6(t)
	before6 := w.snap6()
	toFar := "tcp:" + farIP6 + ":80"
	var mu sync.Mutex
	var aaaa, during6, status string
	b := w.boot(guest{
		Name: "g6", Net: "dhcp", Hold: 4,
		Check: []string{"addr6:" + prefix6, toFar, toOutside},
		Up:    w.helper("natup", ""), Down: w.helper("natdown", ""),
		OnLine: func(line string, _ *os.Process) {
			if !strings.HasPrefix(line, "ok tcp "+farIP6) {
				return
			}
			out, _, _ := w.host.Run("dig", "+short", "+time=2", "@"+gateway6, "g6.kvm", "AAAA")
			st, _ := w.run(filepath.Join(binDir, "kvmnet"), "status")
			mu.Lock()
			aaaa, during6, status = strings.TrimSpace(out), w.host.Sysctl("net.ipv6.conf.all.forwarding"), st
			mu.Unlock()
		},
	})[0]
	b.ran(t)
	lease, ok := b.find("lease")
	if !ok || !strings.HasPrefix(lease, "ip=192.168.100.") {
		t.Errorf("no DHCPv4 lease beside IPv6: %q", lease)
	}
	addr := b.reached(t, "addr6:"+prefix6)
	slaac, gw, _ := strings.Cut(addr, " gw=")
	if p, err := netip.ParsePrefix(slaac); err != nil || p.Bits() != 64 || !netip.MustParsePrefix(prefix6+"/64").Contains(p.Addr()) || !strings.HasPrefix(gw, "fe80::") {
		t.Errorf("guest's IPv6: %q, want a SLAAC address in %s/64 and a default route via the bridge's link-local", addr, prefix6)
	}
	if reply := b.reached(t, toFar); reply != "kvmnet-far saw ["+uplinkIP6+"]" {
		t.Errorf("IPv6-only host answered %q, want it to see the uplink %s (masquerade)", reply, uplinkIP6)
	}
	masqueraded(t, w, b)
	mu.Lock()
	if a, err := netip.ParseAddr(aaaa); err != nil || netip.MustParsePrefix(slaac).Addr() != a {
		t.Errorf("dig AAAA g6.kvm @%s: %q, want the guest's SLAAC address %s", gateway6, aaaa, slaac)
	}
	if !regexp.MustCompile(`(?m)^IPV6 +ADDRESS6 +RA +FORWARD6\ndefault +` + gateway6 + `/64 \(made\) +on +on$`).MatchString(status) {
		t.Errorf("kvmnet status while the guest ran does not show the IPv6 side:\n%s", status)
	}
	if during6 != "1" {
		t.Errorf("IPv6 forwarding was %q while the guest ran, want 1", during6)
	}
	mu.Unlock()
	w.checkRestored()
	if after := w.snap6(); after != before6 {
		t.Errorf("IPv6 state not restored:\nbefore: %s\nafter:  %s", fmt.Sprintf("%+v", before6), fmt.Sprintf("%+v", after))
	}
}

// TestHostOnlyIPv6: a guest on a host-only network with address6 gets a
// SLAAC address from kvmnet's RAs but no IPv6 default route (router
// lifetime 0, as DHCP gives it no router), reaches its IPv6 gateway (echo,
// after neighbour discovery through kvmnet's INPUT rules), and not the
// IPv6-only outside host; afterwards the IPv6 state is as before.
func TestHostOnlyIPv6(t *testing.T) { matrix(t, testHostOnlyIPv6) }

func testHostOnlyIPv6(t *testing.T, fw string) {
	t.Parallel()
	w := newWorld(t, fwConf(fw)+"[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\naddress6 = \"fd00:77::1/64\"\n")
	w.addIPv6(t)
	before6 := w.snap6()
	b := w.boot(guest{
		Name: "h6", Net: "dhcp",
		Check: []string{"addr6:fd00:77::", "ping:fd00:77::1"},
		Try:   []string{"tcp:" + farIP6 + ":80"},
		Up:    w.helper("natup", "lab"), Down: w.helper("natdown", "lab"),
	})[0]
	b.ran(t)
	addr := b.reached(t, "addr6:fd00:77::")
	slaac, gw, _ := strings.Cut(addr, " gw=")
	if p, err := netip.ParsePrefix(slaac); err != nil || !netip.MustParsePrefix("fd00:77::/64").Contains(p.Addr()) || gw != "none" {
		t.Errorf("host-only guest's IPv6: %q, want a SLAAC address in fd00:77::/64 and no default route", addr)
	}
	b.reached(t, "ping:fd00:77::1")
	b.blocked(t, "tcp:"+farIP6+":80")
	w.checkRestored()
	if after := w.snap6(); after != before6 {
		t.Errorf("IPv6 state not restored:\nbefore: %+v\nafter:  %+v", before6, after)
	}
}
