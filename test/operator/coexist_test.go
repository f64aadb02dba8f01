package operator

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// lanGuestScript is guestScript that also prints the server that ACKed.
const lanGuestScript = guestScript + `[ "$1" = bound ] && echo "server $serverid"
exit 0
`

// lanGuest is a VM stand-in on bridge br of h (another server's): vmGuest
// with its port made a port of br.
func lanGuest(t *testing.T, h *host, port, br, mac string) (lease func() (ip, server string)) {
	t.Helper()
	lease = vmGuest(t, h, port, mac)
	h.MustRun("ip", "link", "set", port, "master", br, "up")
	return lease
}

// vmGuest is a VM stand-in: a namespace whose eth0 (MAC mac) is the peer of
// port in h. lease runs udhcpc there and returns the address and the server
// that ACKed it.
func vmGuest(t *testing.T, h *host, port, mac string) (lease func() (ip, server string)) {
	t.Helper()
	udhcpc := busybox(t)
	g := testns.New(t)
	h.MustRun("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	g.MustRun("ip", "link", "set", "eth0", "address", mac, "up") // the bridge's carrier, from the start
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(lanGuestScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return func() (string, string) {
		t.Helper()
		out := g.MustRun(udhcpc, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", script)
		var server string
		for _, ln := range strings.Split(out, "\n") {
			if s, ok := strings.CutPrefix(ln, "server "); ok {
				server = s
			}
		}
		f := strings.Fields(g.MustRun("ip", "-4", "-o", "addr", "show", "dev", "eth0"))
		if len(f) < 4 {
			t.Fatalf("guest of %s has no address", port)
		}
		ip, _, _ := strings.Cut(f[3], "/")
		return ip, server
	}
}

// dnsmasqFor starts dnsmasq in h serving DHCP and DNS on lan0 alone (10.99.0.1/24)
// with bind (bind-interfaces or bind-dynamic), in the foreground, its files in
// the test's directory. It returns its output so far and whether it still runs
// a second after its start; the test's end stops it.
func dnsmasqFor(t *testing.T, h *host, bind string) (out func() string, running bool) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "dnsmasq.log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := h.Cmd("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--user=root", "--group=root",
		"--"+bind, "--interface=lan0", "--except-interface=lo", "--dhcp-range=10.99.0.10,10.99.0.50,12h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"), "--log-dhcp", "--log-facility=-")
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { c.Wait(); close(exited) }()
	t.Cleanup(func() { c.Process.Kill(); <-exited })
	out = func() string { b, _ := os.ReadFile(log); return string(b) }
	select {
	case <-exited:
		return out, false
	case <-time.After(time.Second):
		return out, true
	}
}

// TestBesideDnsmasq: a distribution's dnsmasq, set up to share the host
// (bind-interfaces or bind-dynamic, interface=lan0), and kvmnet's network
// default run side by side in either start order, each guest leasing from
// its own server; a dnsmasq in its wildcard mode, which claims port 67 on
// every interface, makes kvmnet's up fail with a line naming it.
func TestBesideDnsmasq(t *testing.T) {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("no dnsmasq (dnsmasq-base)")
	}
	for _, bind := range []string{"bind-interfaces", "bind-dynamic"} {
		for _, kvmnetFirst := range []bool{true, false} {
			name := bind + map[bool]string{true: ", kvmnet first", false: ", dnsmasq first"}[kvmnetFirst]
			t.Run(name, func(t *testing.T) { besideDnsmasq(t, bind, kvmnetFirst) })
		}
	}
	t.Run("wildcard dnsmasq", func(t *testing.T) {
		h := newHostFW(t, "nftables", "[network.default]\nports = \"any\"\n")
		h.MustRun("ip", "link", "add", "lan0", "type", "bridge")
		h.MustRun("ip", "addr", "add", "10.99.0.1/24", "dev", "lan0")
		h.MustRun("ip", "link", "set", "lan0", "up")
		out, running := dnsmasqFor(t, h, "dhcp-authoritative") // no bind-* option: wildcard
		if !running {
			t.Fatalf("dnsmasq exited:\n%s", out())
		}
		guest(t, h, "g0")
		_, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, h.Program("kvmnet-natup"), "g0")
		if err == nil || !strings.Contains(e, "dhcp bind udp port 67 on br0: address already in use (held on every interface by dnsmasq pid ") {
			t.Errorf("kvmnet-natup beside a wildcard dnsmasq: %v, want its bind refused naming dnsmasq:\n%s", err, e)
		}
	})
}

func besideDnsmasq(t *testing.T, bind string, kvmnetFirst bool) {
	h := newHostFW(t, "nftables", "[network.default]\nports = \"any\"\n")
	h.MustRun("ip", "link", "add", "lan0", "type", "bridge")
	h.MustRun("ip", "addr", "add", "10.99.0.1/24", "dev", "lan0")
	h.MustRun("ip", "link", "set", "lan0", "up")
	_, kvLease := guest(t, h, "g0")
	lanLease := lanGuest(t, h, "l0", "lan0", "52:54:00:99:00:01")
	startDnsmasq := func() func() string {
		out, running := dnsmasqFor(t, h, bind)
		if !running {
			t.Fatalf("dnsmasq (%s) exited:\n%s", bind, out())
		}
		return out
	}
	var log func() string
	if !kvmnetFirst {
		log = startDnsmasq()
	}
	h.helper("kvmnet-natup", "g0")
	if kvmnetFirst {
		log = startDnsmasq()
	}
	if ip := kvLease(); !strings.HasPrefix(ip, "192.168.100.") {
		t.Errorf("kvmnet's guest leased %s, want 192.168.100.x", ip)
	}
	if ip, server := lanLease(); !strings.HasPrefix(ip, "10.99.0.") || server != "10.99.0.1" {
		t.Errorf("dnsmasq's guest leased %s from %q, want 10.99.0.x from 10.99.0.1\ndnsmasq's log:\n%s", ip, server, log())
	}
	if strings.Contains(log(), "br0") {
		t.Errorf("dnsmasq heard kvmnet's bridge:\n%s", log())
	}
	h.helper("kvmnet-natdown", "g0")
}

// networkdConf makes lan0 (10.98.0.1/24) a DHCP server of systemd-networkd's,
// and keeps networkd's hands off routes and rules it did not make.
var networkdConf = map[string]string{
	"network/lan0.network": "[Match]\nName=lan0\n\n[Network]\nAddress=10.98.0.1/24\nDHCPServer=yes\nConfigureWithoutCarrier=yes\n\n[DHCPServer]\nPoolOffset=10\nPoolSize=20\n",
	"networkd.conf":        "[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n",
}

// startNetworkd runs systemd-networkd in h (testdata/networkd.sh) until the
// test ends, and waits for its DHCP server on lan0.
func startNetworkd(t *testing.T, h *host) (log func() string) {
	t.Helper()
	dir := t.TempDir()
	for name, text := range networkdConf {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "networkd.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	script, _ := filepath.Abs("testdata/networkd.sh")
	c := h.Cmd("unshare", "-m", "--propagation", "private", script, dir)
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	log = func() string { b, _ := os.ReadFile(path); return string(b) }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if out, _, _ := h.Run("ss", "-Hulpn", "sport = :67"); strings.Contains(out, "%lan0:67") {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-networkd serves no DHCP on lan0; its log:\n%s", log())
		}
	}
}

// TestBesideNetworkd: systemd-networkd's DHCP server on lan0 and kvmnet's
// network default run side by side in either start order, each guest
// leasing from its own server.
func TestBesideNetworkd(t *testing.T) {
	if _, err := os.Stat("/lib/systemd/systemd-networkd"); err != nil {
		t.Skip("no systemd-networkd (systemd)")
	}
	for _, kvmnetFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "kvmnet first", false: "networkd first"}[kvmnetFirst], func(t *testing.T) {
			h := newHostFW(t, "nftables", "[network.default]\nports = \"any\"\n")
			h.MustRun("ip", "link", "add", "lan0", "type", "bridge")
			h.MustRun("ip", "link", "set", "lan0", "up")
			_, kvLease := guest(t, h, "g0")
			lanLease := lanGuest(t, h, "l0", "lan0", "52:54:00:98:00:01")
			var log func() string
			if !kvmnetFirst {
				log = startNetworkd(t, h)
			}
			h.helper("kvmnet-natup", "g0")
			if kvmnetFirst {
				log = startNetworkd(t, h)
			}
			if ip := kvLease(); !strings.HasPrefix(ip, "192.168.100.") {
				t.Errorf("kvmnet's guest leased %s, want 192.168.100.x", ip)
			}
			if ip, server := lanLease(); !strings.HasPrefix(ip, "10.98.0.") || server != "10.98.0.1" {
				t.Errorf("networkd's guest leased %s from %q, want 10.98.0.x from 10.98.0.1\nnetworkd's log:\n%s", ip, server, log())
			}
			h.helper("kvmnet-natdown", "g0")
		})
	}
}
