package lifecycle

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
)

// TestNetCacheRoundTrip: a network read back from the helpers' cache is the
// one cached, every field (a firewall choice, hosts, an overlay) but the
// forwards, which it elides; another source misses.
func TestNetCacheRoundTrip(t *testing.T) {
	d := state.Dir{Path: t.TempDir()}
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	for _, fw := range []config.Firewall{"", "auto", "nftables"} {
		n := config.Net{Name: "lab", Bridge: "kvlab0", Mode: config.NAT, Gateway: netip.MustParsePrefix("10.77.0.1/24"), MTU: 9000,
			DHCP: true, DNS: true, Router: true, RangeFrom: netip.MustParseAddr("10.77.0.2"), RangeTo: netip.MustParseAddr("10.77.0.9"),
			LeaseTime: time.Hour, Domain: "kvm", Upstreams: []string{"10.0.0.53:53"},
			Hosts:     []config.Host{{MAC: config.MAC{HardwareAddr: mac}, IP: config.Addr{Addr: netip.MustParseAddr("10.77.0.5")}, Name: "web"}},
			Forwards:  []config.PortForward{{Proto: "tcp", Ports: config.PortRange{First: 80, Last: 80}, Guest: netip.MustParseAddr("10.77.0.5"), ToFirst: 80}},
			LeaseFile: "/var/lib/kvmnet/lab.leases", VXLAN: &config.Overlay{VNI: 7, Peers: []netip.Addr{netip.MustParseAddr("198.51.100.2")}, Port: 4789, Device: "vx-lab"},
			Firewall: fw, Hash: "abc", Source: "v1 /etc/kvmnet/kvmnet.toml 1:2:3 nat"}
		writeCache(d, n.Name, encodeNetwork(n))
		got, ok := CachedNetwork(d, "lab", n.Source)
		want := n
		want.Forwards, want.Elided = nil, true
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("firewall %q: cached network read back as %+v, %v; want %+v", fw, got, ok, want)
		}
		if _, ok := CachedNetwork(d, "lab", "v1 other"); ok {
			t.Error("a cache of another file or mode was taken")
		}
	}
}
