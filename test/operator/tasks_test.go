package operator

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// readmeTasks are the commands of the README's "A first VM" and "Common
// tasks" sections, each with the test that runs it. TestCommonTasks runs its
// ones as root (so without sudo), on the network default, with
// 192.168.100.23 standing for the address the test guest leased.
var readmeTasks = map[string]string{
	"make build && sudo make install": "TestMakeInstall",
	"sudo qemu-system-x86_64 -enable-kvm -m 1G -drive file=disk.qcow2 -netdev tap,id=n0,script=/usr/libexec/kvmnet-natup,downscript=/usr/libexec/kvmnet-natdown -device virtio-net-pci,netdev=n0,mac=$(kvmnet mac web1)": "TestFirstVM",
	"kvmnet status": "TestCommonTasks, TestFirstVM",
	"kvmnet mac web1 --host 192.168.100.10 | sudo tee -a /etc/kvmnet/kvmnet.toml": "TestFixedAddress",
	"dig +short @192.168.100.1 web1.kvm":                                          "TestCommonTasks",
	"curl http://192.168.100.23/":                                                 "TestCommonTasks",
	"sudo kvmnet reload":                                                          "TestCommonTasks, TestFixedAddress",
	"curl http://HOST:8080/":                                                      "TestCommonTasks (HOST is the host's LAN address)",
	"sudo systemctl enable --now kvmnet-up@default":                               "TestCommonTasks runs the unit's ExecStart and ExecStop",
	"sudo kvmnet down --all":                                                      "TestCommonTasks, TestDownAll",
	"sudo make uninstall":                                                         "TestMakeInstall",
	"sudo dpkg -r kvmnet":                                                         "TestDebLifecycle",
	"sudo dpkg --purge kvmnet":                                                    "TestDebLifecycle",
	"sudo rm -rf /var/lib/kvmnet /run/kvmnet /etc/kvmnet":                         "TestMakeInstall",
}

// readmeCommands returns the commands of the README's sh blocks in the
// sections titled as given: a line ending in a backslash joined with the
// next, a trailing "# comment" cut off.
func readmeCommands(t *testing.T, sections ...string) []string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	section, block, cont := false, false, ""
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			section = slices.Contains(sections, strings.TrimPrefix(line, "## "))
		case section && block && line == "```":
			block = false
		case section && line == "```sh":
			block = true
		case section && block:
			cmd, _, _ := strings.Cut(line, " # ")
			cmd = strings.TrimSpace(cmd)
			if c, ok := strings.CutSuffix(cmd, "\\"); ok {
				cont += strings.TrimSpace(c) + " "
				continue
			}
			if cmd = cont + cmd; cmd != "" {
				got = append(got, cmd)
			}
			cont = ""
		}
	}
	return got
}

// TestCommonTasksListed: the README's "A first VM" and "Common tasks" show
// exactly the commands readmeTasks lists, so that none goes untested.
func TestCommonTasksListed(t *testing.T) {
	got := readmeCommands(t, "A first VM", "Common tasks")
	var want []string
	for cmd := range readmeTasks {
		want = append(want, cmd)
	}
	got = slices.Compact(slices.Sorted(slices.Values(got)))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("README's first VM and common tasks show\n  %s\nthe tests run\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// guestScript is a udhcpc script that applies the lease inside the guest's
// namespace (and, unlike a real guest's, leaves /etc/resolv.conf alone).
const guestScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do ip route replace default via "$r" dev "$interface"; done
	;;
esac
`

// guest is a VM stand-in: a namespace whose eth0 is the peer of port (the
// "tap") in h, with a stable MAC, that leases an address as web1.
func guest(t *testing.T, h *host, port string) (g *testns.NS, lease func() string) {
	t.Helper()
	return guestWith(t, h, port, "52:54:00:3c:a1:07", "web1")
}

// guestWith is guest with the given MAC and host name.
func guestWith(t *testing.T, h *host, port, mac, name string) (g *testns.NS, lease func() string) {
	t.Helper()
	g = testns.New(t)
	h.MustRun("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	return g, func() string {
		t.Helper()
		g.MustRun("ip", "link", "set", "eth0", "address", mac, "up")
		return leaseAs(t, g, name, "")
	}
}

// background starts argv in ns and returns what stops it (at the latest
// when the test ends).
func background(t *testing.T, ns *testns.NS, argv ...string) (stop func()) {
	t.Helper()
	c := ns.Cmd(argv...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { c.Process.Kill(); c.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// TestCommonTasks runs the README's "Common tasks" on a NAT network with one
// guest: its address from `kvmnet status`, its name at the gateway, its web
// server from the host and, through a port forward, from a LAN machine; tearing down;
// and a reboot: a fresh namespace with the old leases, the boot unit's
// commands, and the guest's address kept.
func TestCommonTasks(t *testing.T) {
	// ports = "any": the guests are veths standing for VMs' taps.
	h := newHost(t, "[network.default]\nports = \"any\"\n[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\nports = \"any\"\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	g, lease := guest(t, h, "g0")
	h.helper("kvmnet-natup", "g0")
	ip := lease()
	task := func(cmd string) []string {
		if _, ok := readmeTasks[cmd]; !ok {
			t.Fatalf("%q is not in readmeTasks", cmd)
		}
		cmd = strings.ReplaceAll(strings.TrimPrefix(cmd, "sudo "), "192.168.100.23", ip)
		return strings.Fields(strings.ReplaceAll(cmd, "HOST", "10.0.0.1"))
	}
	run := func(ns *testns.NS, cmd string) string {
		t.Helper()
		argv := task(cmd)
		if argv[0] == "kvmnet" {
			argv = append([]string{"env", "KVMNET_CONFIG=" + h.Config, filepath.Join(bin, "kvmnet")}, argv[1:]...)
		}
		return ns.MustRun(argv...)
	}

	// A VM's address: the LEASE table (the daemon writes it just after its ACK).
	var status string
	testhost.WaitFor(t, func() bool {
		status = run(h.NS, "kvmnet status")
		return strings.Contains(status, "LEASE") && strings.Contains(status, ip) && strings.Contains(status, "web1")
	}, &testhost.Buffer{})

	// Its name, asked of the gateway.
	if out := strings.TrimSpace(run(h.NS, "dig +short @192.168.100.1 web1.kvm")); out != ip {
		t.Errorf("dig web1.kvm at the gateway: %q, want %s", out, ip)
	}

	// Its web server: from the host, and from the LAN through a port forward.
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from web1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	background(t, g, busybox(t), "httpd", "-f", "-p", ip+":80", "-h", www)
	testhost.WaitFor(t, func() bool {
		_, _, err := h.Run(task("curl http://192.168.100.23/")...)
		return err == nil
	}, &testhost.Buffer{})
	if out := run(h.NS, "curl http://192.168.100.23/"); out != "hello from web1\n" {
		t.Errorf("curl from the host: %q", out)
	}
	// So is a host-only guest.
	g1, lease1 := guest(t, h, "g1")
	h.helper("kvmnet-ifup@lab", "g1")
	ip1 := lease1()
	background(t, g1, busybox(t), "httpd", "-f", "-p", ip1+":80", "-h", www)
	curl1 := append(task("curl http://192.168.100.23/")[:1], "http://"+ip1+"/")
	testhost.WaitFor(t, func() bool {
		out, _, err := h.Run(curl1...)
		return err == nil && out == "hello from web1\n"
	}, &testhost.Buffer{})
	h.helper("kvmnet-ifdown@lab", "g1")
	h.MustRun("ip", "link", "del", "g1")
	lan := testns.New(t)
	h.MustRun("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan.Name)
	h.MustRun("ip", "addr", "add", "10.0.0.1/24", "dev", "lan0")
	h.MustRun("ip", "link", "set", "lan0", "up")
	lan.MustRun("ip", "addr", "add", "10.0.0.2/24", "dev", "eth0")
	lan.MustRun("ip", "link", "set", "eth0", "up")
	// From the LAN: the README's forward added to the file, applied by reload.
	f, err := os.OpenFile(h.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString("\n[[network.default.forward]]\nproto = \"tcp\"\nport  = 8080\nto    = \"" + ip + ":80\"\n")
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	run(h.NS, "sudo kvmnet reload")
	if out := run(lan, "curl http://HOST:8080/"); out != "hello from web1\n" {
		t.Errorf("curl from the LAN through the forward: %q", out)
	}

	// Tearing down: refused while the VM is there, then done by its downscript.
	if _, e, code := h.kvmnet(nil, task("sudo kvmnet down --all")[1:]...); code != 1 || !strings.Contains(e, "default by g0") {
		t.Errorf("down --all with the VM up: exit %d, %s", code, e)
	}
	h.helper("kvmnet-natdown", "g0")
	run(h.NS, "sudo kvmnet down --all")
	h.MustRun("ip", "link", "del", "g0")
	h.MustRun("ip", "link", "del", "lan0")
	h.AssertClean(rules, fwd)

	// A reboot: a namespace with nothing of kvmnet's, the leases kept.
	r := newHost(t, "[network.default]\nports = \"any\"\n")
	copyLeases(t, filepath.Dir(h.Config), filepath.Dir(r.Config))
	start, stop := unitCommands(t, "sudo systemctl enable --now kvmnet-up@default")
	rrules, rfwd := r.IptablesSave(), r.Sysctl("net.ipv4.ip_forward")
	r.must(start...)
	_, lease = guest(t, r, "g0")
	r.helper("kvmnet-natup", "g0")
	if again := lease(); again != ip {
		t.Errorf("after the reboot the guest leased %s, before %s", again, ip)
	}
	if _, _, code := r.kvmnet(nil, stop...); code != 1 {
		t.Errorf("the unit's ExecStop with a VM up: exit %d, want 1 (refused)", code)
	}
	r.helper("kvmnet-natdown", "g0")
	if !r.Exists("br0") {
		t.Error("the boot unit's network went down with its last VM")
	}
	r.must(stop...)
	r.MustRun("ip", "link", "del", "g0")
	r.AssertClean(rrules, rfwd)
}

// unitCommands returns the kvmnet arguments of kvmnet-up@NETWORK.service's
// ExecStart and ExecStop, for the instance cmd enables.
func unitCommands(t *testing.T, cmd string) (start, stop []string) {
	t.Helper()
	if _, ok := readmeTasks[cmd]; !ok {
		t.Fatalf("%q is not in readmeTasks", cmd)
	}
	_, instance, _ := strings.Cut(cmd, "kvmnet-up@")
	unit := mustRead(t, "../../packaging/kvmnet-up@.service")
	for _, l := range strings.Split(unit, "\n") {
		key, val, _ := strings.Cut(l, "=")
		args := strings.Fields(strings.ReplaceAll(val, "%i", instance))
		switch {
		case len(args) == 0 || args[0] != "/usr/bin/kvmnet":
		case key == "ExecStart":
			start = args[1:]
		case key == "ExecStop":
			stop = args[1:]
		}
	}
	if start == nil || stop == nil {
		t.Fatalf("kvmnet-up@.service lacks an ExecStart or ExecStop of /usr/bin/kvmnet:\n%s", unit)
	}
	return start, stop
}

// copyLeases copies the lease files of one lease_dir to another, as they
// stay in /var/lib/kvmnet across a reboot.
func copyLeases(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == "kvmnet.toml" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
