package operator

import (
	"net"
	"os"
	"strings"
	"testing"
)

// reloadConf is the default network with a static host and a forward to the
// guest the test leases an address for (ADDR), a veth standing for a tap.
const reloadConf = `
[network.default]
ports = "any"
[[network.default.host]]
mac = "52:54:00:00:00:99"
ip = "192.168.100.99"
name = "fixed"
[[network.default.forward]]
proto = "tcp"
port = 8080
to = "ADDR:80"
`

// TestReload: `kvmnet reload` applies an edited file to a network with a VM on
// it: the forward moved (no rule of the old one left), a new static host
// answered by name, the guest's lease kept; nothing restarts when nothing
// changed; the bridge cannot change live, and saying so changes nothing. A
// warm up (the next VM) applies an edit the same way. Doctor names a program
// listening on a forwarded port and a forward whose guest has no lease.
func TestReload(t *testing.T) {
	for _, fw := range []string{"iptables", "nftables"} {
		t.Run(fw, func(t *testing.T) { testReload(t, fw) })
	}
}

func testReload(t *testing.T, fw string) {
	h := newHostFW(t, fw, "[network.default]\nports = \"any\"\n") // the test's guest is a veth
	// What either backend made: iptables' rules, and nftables' table.
	ruleset := func() string { return h.IptablesSave() + h.MustRun("nft", "-s", "list", "ruleset") }
	_, lease := guest(t, h, "g0")
	h.helper("kvmnet-natup", "g0")
	ip := lease()
	write := func(conf string) {
		t.Helper()
		b, err := os.ReadFile(h.Config)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfterN(string(b), "\n", 3) // lease_dir, firewall
		if err := os.WriteFile(h.Config, []byte(lines[0]+lines[1]+strings.ReplaceAll(conf, "ADDR", ip)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pid := func() int { return h.status("default").Networks[0].Services.PID }
	write(reloadConf)
	before := pid()
	h.must("reload")
	rules := ruleset()
	if !strings.Contains(rules, "dport 8080") || !strings.Contains(rules, ip+":80") {
		t.Fatalf("reload did not add the forward:\n%s", rules)
	}
	if after := pid(); after == before {
		t.Errorf("a new static host did not restart the DHCP/DNS daemon (pid %d)", after)
	}
	if out := strings.TrimSpace(h.MustRun("dig", "+short", "@192.168.100.1", "fixed.kvm")); out != "192.168.100.99" {
		t.Errorf("dig fixed.kvm after reload: %q, want 192.168.100.99", out)
	}
	s := h.status("default").Networks[0]
	if len(s.Services.Leases) != 1 || s.Services.Leases[0].IP != ip {
		t.Errorf("leases after reload: %+v, want the guest's %s", s.Services.Leases, ip)
	}
	if len(s.Forwards) != 1 || s.Forwards[0].Port != "8080" || s.Forwards[0].To != ip+":80" || !s.Forwards[0].Leased {
		t.Errorf("status forwards: %+v", s.Forwards)
	}

	if v := h.Sysctl("net.ipv4.conf.br0.route_localnet"); v != "1" {
		t.Errorf("route_localnet on br0 with a forward: %s, want 1", v)
	}

	// Nothing changed: nothing restarts, no rule moves.
	same := pid()
	h.must("reload", "default")
	if pid() != same || ruleset() != rules {
		t.Error("a reload with nothing changed restarted the daemon or changed rules")
	}

	// The bridge cannot change under a running VM.
	write(strings.Replace(reloadConf, "[network.default]", "[network.default]\nbridge = \"kvbr9\"", 1))
	_, errOut, code := h.kvmnet(nil, "reload")
	if code == 0 || !strings.Contains(errOut, "network default: bridge br0 -> kvbr9") || !strings.Contains(errOut, "cannot change while it is up") {
		t.Errorf("reload of a changed bridge: exit %d, %q", code, errOut)
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Errorf("reload's error is not one line: %q", errOut)
	}
	if ruleset() != rules {
		t.Error("a refused reload changed rules")
	}

	// A warm up applies an edit: the forward moves to 9090.
	write(strings.Replace(reloadConf, "port = 8080", "port = 9090", 1))
	h.taps("t1")
	h.helper("kvmnet-natup", "t1")
	rules = ruleset()
	if !strings.Contains(rules, "dport 9090") || strings.Contains(rules, "dport 8080") {
		t.Errorf("the next VM's up did not move the forward:\n%s", rules)
	}

	// Doctor: a program on the forwarded port, and a forward to no lease.
	stop := background(t, h.NS, busybox(t), "nc", "-l", "-p", "9090")
	for i := 0; i < 50 && !strings.Contains(h.MustRun("cat", "/proc/net/tcp"), ":2382 00000000:0000 0A"); i++ {
		h.MustRun("sleep", "0.05")
	}
	write(strings.Replace(reloadConf, "port = 8080", "port = 9090", 1) +
		"[[network.default.forward]]\nproto = \"udp\"\nport = 5000\nto = \"192.168.100.200:5000\"\n")
	h.must("reload")
	out, _, _ := h.kvmnet(nil, "doctor")
	stop()
	// The last forward gone: no forward rule, the loopback guard and
	// route_localnet with them.
	write("[network.default]\nports = \"any\"\n")
	h.must("reload")
	if rules := ruleset(); strings.Contains(strings.ToLower(rules), "dnat") || strings.Contains(rules, "127.0.0.0/8") {
		t.Errorf("forward rules left after the last forward went:\n%s", rules)
	}
	if v := h.Sysctl("net.ipv4.conf.br0.route_localnet"); v != "0" {
		t.Errorf("route_localnet on br0 with no forward left: %s, want 0", v)
	}
	for _, want := range []string{
		"info: network default: forward udp 5000 goes to 192.168.100.200:5000, which no guest has a lease on",
		"problem: network default: a program listens on tcp port 9090, which the forward to " + ip + " takes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor does not say %q:\n%s", want, out)
		}
	}
}

// TestStatusForwardsDown: the forwards of a network that is down are the
// file's, and a default network with no mode in the file is no error.
func TestStatusForwardsDown(t *testing.T) {
	h := newHost(t, strings.ReplaceAll(reloadConf, "ADDR", "192.168.100.23"))
	s := h.status("default").Networks[0]
	if s.Up || len(s.Errors) != 0 || len(s.Forwards) != 1 || s.Forwards[0].Port != "8080" || s.Forwards[0].To != "192.168.100.23:80" || s.Forwards[0].Leased {
		t.Errorf("status of the default network, down, with a forward: %+v", s)
	}
	if out := h.must("status"); !strings.Contains(out, "FORWARD") || !strings.Contains(out, "192.168.100.23:80") {
		t.Errorf("status table lacks the forward:\n%s", out)
	}
}

// TestStatusForwards6Down: a down network's IPv6 forwards are the file's: a
// dual-stack static host's forward is listed once per family, IPv6
// addresses in brackets, and the table shows no lease column for them.
func TestStatusForwards6Down(t *testing.T) {
	h := newHost(t, `
[network.default]
address6 = "fd00:6b76:6d6e::1/64"
[[network.default.host]]
mac = "52:54:00:00:00:21"
ip = "192.168.100.21"
ip6 = "fd00:6b76:6d6e::21"
name = "web"
[[network.default.forward]]
proto = "tcp"
port = 8080
to = "web:80"
[[network.default.forward]]
proto = "tcp"
port = 8443
to = "[fd00:6b76:6d6e::22]:443"
host_ip = "2001:db8::2"
`)
	s := h.status("default").Networks[0]
	var got []string
	for _, f := range s.Forwards {
		got = append(got, f.HostIP+" "+f.Port+" "+f.To)
	}
	if want := " 8080 192.168.100.21:80| 8080 [fd00:6b76:6d6e::21]:80|2001:db8::2 8443 [fd00:6b76:6d6e::22]:443"; strings.Join(got, "|") != want {
		t.Errorf("forwards of the down network:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	out := h.must("status")
	for _, w := range []string{"[2001:db8::2]:8443", "[fd00:6b76:6d6e::22]:443"} {
		if !strings.Contains(out, w) {
			t.Errorf("status table lacks %s:\n%s", w, out)
		}
	}
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, "[fd00:6b76:6d6e::22]:443") && !strings.HasSuffix(strings.TrimSpace(l), " -") {
			t.Errorf("an IPv6 forward's row shows a lease state: %q", l)
		}
	}
}

// TestDoctorForwards6: doctor expects no DHCP lease of an IPv6 forward's
// guest (its address is SLAAC's or its own), while it still names an IPv4
// forward's guest without one.
func TestDoctorForwards6(t *testing.T) {
	h := newHost(t, `
[network.default]
address6 = "fd00:6b76:6d6e::1/64"
[[network.default.forward]]
proto = "tcp"
port = 8443
to = "[fd00:6b76:6d6e::22]:443"
[[network.default.forward]]
proto = "udp"
port = 5000
to = "192.168.100.200:5000"
`)
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	// Programs on the IPv6 forward's port: the IPv6 one loses its
	// connections to the forward, the IPv4-only one does not.
	for _, network := range []string{"tcp4", "tcp6"} {
		var ln net.Listener
		if err := h.NS.Do(func() (err error) { ln, err = net.Listen(network, ":8443"); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	out, _ := h.doctor(nil)
	if !strings.Contains(out, "forward udp 5000 goes to 192.168.100.200:5000, which no guest has a lease on") {
		t.Errorf("doctor does not name the IPv4 forward's unleased guest:\n%s", out)
	}
	if strings.Contains(out, "goes to [fd00:6b76:6d6e::22]") {
		t.Errorf("doctor expects a lease of the IPv6 forward's guest:\n%s", out)
	}
	if n := strings.Count(out, "a program listens on tcp port 8443"); n != 1 || !strings.Contains(out, "/proc/net/tcp6") {
		t.Errorf("doctor names %d programs on the IPv6 forward's port 8443, want 1 (the IPv6 one):\n%s", n, out)
	}
}
