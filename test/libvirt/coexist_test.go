package libvirt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// libvirtNAT is a NAT network of libvirt's own as virt-manager's default is,
// on virbr9 (libvirt runs its dnsmasq for it: bind-dynamic, interface=virbr9).
const libvirtNAT = `<network>
  <name>lvnat</name>
  <forward mode='nat'/>
  <bridge name='virbr9' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>`

// nsGuestScript applies a lease in the guest's namespace and prints the
// server that ACKed it.
const nsGuestScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	echo "server $serverid"
	;;
esac
exit 0
`

// nsGuest is a VM stand-in: a namespace whose eth0's peer is port in the
// lab's host namespace, leasing with mac; attach puts port where it goes.
type nsGuest struct {
	ns   *testns.NS
	port string
	mac  string
}

func (l *lab) nsGuest(port, mac string) *nsGuest {
	g := &nsGuest{ns: testns.New(l.t), port: port, mac: mac}
	l.host.MustRun("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", g.ns.Name)
	g.ns.MustRun("ip", "link", "set", "eth0", "address", mac, "up")
	return g
}

// lease runs udhcpc in the guest and returns the address and the server.
func (l *lab) lease(g *nsGuest) (ip, server string) {
	l.t.Helper()
	script := filepath.Join(l.t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(nsGuestScript), 0o755); err != nil {
		l.t.Fatal(err)
	}
	g.ns.MustRun("ip", "-4", "addr", "flush", "dev", "eth0")
	out, e, err := g.ns.Run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "8", "-T", "1", "-s", script)
	if err != nil {
		l.t.Errorf("guest on %s got no lease: %v\n%s%s\nkvmnet's daemons:\n%s", g.port, err, out, e, l.host.DaemonLogs())
		return "", ""
	}
	for _, ln := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(ln, "server "); ok {
			server = s
		}
	}
	f := strings.Fields(g.ns.MustRun("ip", "-4", "-o", "addr", "show", "dev", "eth0"))
	if len(f) >= 4 {
		ip, _, _ = strings.Cut(f[3], "/")
	}
	return ip, server
}

// TestBesideLibvirtNetwork: libvirt's own NAT network (its dnsmasq, as
// libvirt starts it) and kvmnet's network default run side by side on one
// host in either start order, and a guest on each leases from its own
// server. `virsh net-start` after a kvmnet network was up failed with
// dnsmasq's "failed to bind DHCP server socket: Address already in use".
func TestBesideLibvirtNetwork(t *testing.T) {
	l := newLab(t)
	conf := "lease_dir = " + `"` + filepath.Join(l.dir, "leases") + `"` + "\n[network.default]\nports = \"any\"\n"
	if err := os.WriteFile(filepath.Join(l.dir, "kvmnet.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	xml := filepath.Join(l.dir, "lvnat.xml")
	if err := os.WriteFile(xml, []byte(libvirtNAT), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := l.virsh("net-define", xml); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	kv := l.nsGuest("g-kv", "52:54:00:aa:00:01")
	lv := l.nsGuest("g-lv", "52:54:00:bb:00:01")
	natup := func() {
		t.Helper()
		if _, out, err := l.host.Run("env", "KVMNET_CONFIG="+filepath.Join(l.dir, "kvmnet.toml"), filepath.Join(bin, "kvmnet-natup"), kv.port); err != nil {
			t.Fatalf("kvmnet-natup %s: %v\n%s", kv.port, err, out)
		}
	}
	netStart := func() {
		t.Helper()
		if out, err := l.virsh("net-start", "lvnat"); err != nil {
			t.Fatalf("virsh net-start beside kvmnet's network: %v\n%s", err, out)
		}
		l.host.MustRun("ip", "link", "set", lv.port, "master", "virbr9", "up")
	}
	for _, kvmnetFirst := range []bool{true, false} {
		name := map[bool]string{true: "kvmnet first", false: "libvirt first"}[kvmnetFirst]
		t.Run(name, func(t *testing.T) {
			l := l.with(t)
			if kvmnetFirst {
				natup()
				netStart()
			} else {
				netStart()
				natup()
			}
			if ip, server := l.lease(kv); !strings.HasPrefix(ip, "192.168.100.") || server != "192.168.100.1" {
				t.Errorf("the guest on kvmnet's br0 leased %q from %q, want 192.168.100.x from 192.168.100.1", ip, server)
			}
			if ip, server := l.lease(lv); !strings.HasPrefix(ip, "192.168.122.") || server != "192.168.122.1" {
				t.Errorf("the guest on libvirt's virbr9 leased %q from %q, want 192.168.122.x from 192.168.122.1", ip, server)
			}
			if out, err := l.kvmnet("doctor"); err != nil {
				t.Errorf("kvmnet doctor beside libvirt's network: %v\n%s", err, out)
			}
			if _, out, err := l.host.Run("env", "KVMNET_CONFIG="+filepath.Join(l.dir, "kvmnet.toml"), filepath.Join(bin, "kvmnet-natdown"), kv.port); err != nil {
				t.Errorf("kvmnet-natdown: %v\n%s", err, out)
			}
			if out, err := l.virsh("net-destroy", "lvnat"); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}
