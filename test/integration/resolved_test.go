package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resolvedDir is where scripts/deps.sh unpacks Debian 12's systemd-resolved
// (never installed: its package points the machine's /etc/resolv.conf at it).
const resolvedDir = "/var/cache/kvmnet-test/systemd-resolved"

// TestResolvedNames: on a host running systemd-resolved, a network's first up
// registers its gateway as the DNS server of its domain on its bridge, so
// that the host resolves a guest's name (getent, through /etc/resolv.conf's
// 127.0.0.53, as ssh would); after the last down resolved no longer does.
// resolved and a system dbus-daemon run in the test's network namespace and
// a mount namespace of their own, with a tmpfs /run, as no systemd starts them.
func TestResolvedNames(t *testing.T) {
	bin := filepath.Join(resolvedDir, "lib/systemd/systemd-resolved")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%v: run scripts/deps.sh (it unpacks systemd-resolved there)", err)
	}
	h := newHost(t, "nftables", `[network.lab]
bridge = "kvres0"
mode = "hostonly"
address = "10.88.0.1/24"
dhcp = false
upstreams = ["192.0.2.53"]
ports = "any"
[[network.lab.host]]
mac = "52:54:00:00:88:21"
ip = "10.88.0.21"
name = "web1"
`)
	world := resolvedWorld(t, h)
	h.guest("vres", "10.88.0.21/24", "10.88.0.1")
	if out, err := world("getent", "hosts", "web1.kvm"); err == nil {
		t.Fatalf("web1.kvm resolves before any up: %s", out)
	}
	if out, err := world("env", "KVMNET_CONFIG="+h.Config, h.Program("kvmnet-natup@lab"), "vres"); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	// resolved asks a link's servers once it sees the bridge up, with a
	// carrier and its address: a moment after the up.
	out, err := world("getent", "hosts", "web1.kvm")
	for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err = world("getent", "hosts", "web1.kvm")
	}
	if err != nil || !strings.HasPrefix(out, "10.88.0.21 ") {
		dns, _ := world("busctl", "--system", "get-property", "org.freedesktop.resolve1", "/org/freedesktop/resolve1", "org.freedesktop.resolve1.Manager", "DNS")
		st, _ := world(resolvedDir+"/usr/bin/resolvectl", "status")
		q, _ := world("dig", "@127.0.0.53", "web1.kvm")
		d, _ := world("dig", "@10.88.0.1", "web1.kvm")
		t.Fatalf("getent hosts web1.kvm on the host: %q, %v; want 10.88.0.21 (resolved's DNS: %s)\n%s\n%s\n%s", out, err, dns, st, q, d)
	}
	if out, err := world("env", "KVMNET_CONFIG="+h.Config, h.Program("kvmnet-natdown@lab"), "vres"); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := world("getent", "hosts", "web1.kvm")
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web1.kvm still resolves 5 s after the last down: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// resolvedWorld starts dbus-daemon --system (resolve1's bus policy
// included) and systemd-resolved in h's network namespace, in a mount
// namespace with a tmpfs /run, a systemd-resolve user and /etc/resolv.conf
// naming 127.0.0.53, and returns a runner of commands in both namespaces.
func resolvedWorld(t *testing.T, h *host) func(argv ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	passwd, _ := os.ReadFile("/etc/passwd")
	group, _ := os.ReadFile("/etc/group")
	files := map[string]string{
		"passwd":      string(passwd) + "systemd-resolve:x:64990:64990::/run/systemd/resolve:/usr/sbin/nologin\n",
		"group":       string(group) + "systemd-resolve:x:64990:\n",
		"resolv.conf": "nameserver 127.0.0.53\noptions edns0 trust-ad\n",
		"bus.conf": `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <include>/usr/share/dbus-1/system.conf</include>
  <includedir>` + resolvedDir + `/usr/share/dbus-1/system.d</includedir>
</busconfig>
`,
		"resolved.conf": "[Resolve]\nLLMNR=no\nMulticastDNS=no\nDNSStubListener=yes\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd/resolved.conf.d
cp %[1]s/resolved.conf /run/systemd/resolved.conf.d/test.conf
for f in passwd group resolv.conf; do mount --bind %[1]s/$f /etc/$f; done
dbus-daemon --config-file=%[1]s/bus.conf --nofork --nopidfile >%[1]s/dbus.log 2>&1 &
for i in $(seq 100); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.05; done
%[2]s >%[1]s/resolved.log 2>&1 &
echo ready
exec sleep 100000`, dir, filepath.Join(resolvedDir, "lib/systemd/systemd-resolved"))
	holder := h.Cmd("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	buf := make([]byte, 6)
	if n, _ := out.Read(buf); string(buf[:n]) != "ready\n" {
		t.Fatalf("the resolved world did not start: %q", buf[:n])
	}
	pid := strconv.Itoa(holder.Process.Pid)
	run := func(argv ...string) (string, error) {
		c := exec.Command("nsenter", append([]string{"-t", pid, "-m", "-n", "--"}, argv...)...)
		b, err := c.CombinedOutput()
		return string(b), err
	}
	owned := func() bool {
		o, err := run("dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.resolve1")
		return err == nil && strings.Contains(o, "boolean true")
	}
	for deadline := time.Now().Add(10 * time.Second); !owned(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(filepath.Join(dir, "resolved.log"))
			bus, _ := os.ReadFile(filepath.Join(dir, "dbus.log"))
			t.Fatalf("systemd-resolved did not take its bus name in 10 s\nresolved: %s\ndbus: %s", logs, bus)
		}
	}
	return run
}
