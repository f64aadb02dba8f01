package operator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestFixedAddress runs the README's "A fixed address" as written: a guest
// with `kvmnet mac web1`'s MAC leases an address from the pool; the static
// host `kvmnet mac web1 --host` prints, appended to the file and applied by
// `kvmnet reload`, gives it 192.168.100.10 at its next request, even one
// asking for its old address (a renewal of it is NAKed); web1 then answers in DNS and names a forward.
func TestFixedAddress(t *testing.T) {
	h := newHost(t, "[network.default]\nports = \"any\"\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	mac := strings.TrimSpace(h.must("mac", "web1"))
	g := testns.New(t)
	h.MustRun("ip", "link", "add", "g0", "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	g.MustRun("ip", "link", "set", "eth0", "address", mac, "up")
	h.helper("kvmnet-natup", "g0")
	before := leaseAs(t, g, "web1", "")
	if before == "192.168.100.10" {
		t.Fatal("the pool gave the fixed address before it was fixed: pick another in the README")
	}

	for _, cmd := range []string{"kvmnet mac web1 --host 192.168.100.10 | sudo tee -a /etc/kvmnet/kvmnet.toml", "sudo kvmnet reload"} {
		if _, ok := readmeTasks[cmd]; !ok {
			t.Fatalf("%q is not in readmeTasks", cmd)
		}
		sh := strings.ReplaceAll(cmd, "sudo ", "")
		sh = strings.ReplaceAll(sh, "/etc/kvmnet/kvmnet.toml", h.Config)
		sh = strings.ReplaceAll(sh, "kvmnet ", "env KVMNET_CONFIG="+h.Config+" "+filepath.Join(bin, "kvmnet")+" ")
		if out, e, err := h.Run("sh", "-c", sh); err != nil {
			t.Fatalf("%s: %v\n%s%s", cmd, err, out, e)
		}
	}
	// The lines added are those the README shows.
	lines := "[[network.default.host]]\nmac  = \"" + mac + "\"\nip   = \"192.168.100.10\"\nname = \"web1\"\n"
	if conf := mustRead(t, h.Config); !strings.Contains(conf, lines) {
		t.Errorf("the file after the README's line:\n%s", conf)
	}
	if !strings.Contains(mustRead(t, "../../README.md"), "```toml\n"+lines+"```\n") {
		t.Errorf("the README does not show the lines kvmnet mac web1 --host prints:\n%s", lines)
	}
	if got := leaseAs(t, g, "web1", before); got != "192.168.100.10" {
		t.Errorf("renewing %s after the reload: leased %s, want 192.168.100.10", before, got)
	}
	if out := strings.TrimSpace(h.MustRun("dig", "+short", "@192.168.100.1", "web1.kvm")); out != "192.168.100.10" {
		t.Errorf("web1.kvm: %q", out)
	}
	f, err := os.OpenFile(h.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString("[[network.default.forward]]\nproto = \"tcp\"\nport = 8080\nto = \"web1:80\"\n")
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	h.must("reload")

	h.helper("kvmnet-natdown", "g0")
	h.MustRun("ip", "link", "del", "g0")
	h.AssertClean(rules, fwd)
}

// leaseAs runs a DHCP client in g once, sending host name name and asking
// for address want (none: ""), and returns the address it leased.
func leaseAs(t *testing.T, g *testns.NS, name, want string) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(guestScript), 0o755); err != nil {
		t.Fatal(err)
	}
	argv := []string{busybox(t), "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", script, "-x", "hostname:" + name}
	if want != "" {
		argv = append(argv, "-r", want)
	}
	g.MustRun(argv...)
	ip := strings.Fields(g.MustRun("ip", "-4", "-o", "addr", "show", "dev", "eth0"))
	if len(ip) < 4 {
		t.Fatalf("the guest has no address: %v", ip)
	}
	addr, _, _ := strings.Cut(ip[3], "/")
	return addr
}
