package operator

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// doctor runs `kvmnet doctor` with args and returns its output and exit code.
func (h *host) doctor(env []string, args ...string) (string, int) {
	out, stderr, code := h.kvmnet(env, append([]string{"doctor"}, args...)...)
	if code == 2 {
		h.T.Fatalf("doctor: exit 2: %s", stderr)
	}
	return out, code
}

// expectFinding runs doctor and checks that it exits code and prints a line
// of that level containing want.
func (h *host) expectFinding(level, want string, code int, env ...string) string {
	h.T.Helper()
	out, got := h.doctor(env)
	if got != code || !hasLine(out, level+": ", want) {
		h.T.Fatalf("doctor: exit %d (want %d), want a %s line with %q:\n%s", got, code, level, want, out)
	}
	return out
}

func hasLine(out, prefix, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// fix runs `doctor --fix` and checks it leaves a healthy namespace.
func (h *host) fix() {
	h.T.Helper()
	if out, stderr, code := h.kvmnet(nil, "doctor", "--fix"); code != 0 {
		h.T.Fatalf("doctor --fix: exit %d:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if out, code := h.doctor(nil); code != 0 {
		h.T.Fatalf("doctor after --fix: exit %d:\n%s", code, out)
	}
}

// upHost is a host with the default network up and taps vnet0, vnet1 on it.
func upHost(t *testing.T) *host { return upHostWith(t, "") }

// upHostWith is upHost with a configuration file.
func upHostWith(t *testing.T, config string) *host {
	h := newHost(t, config)
	h.taps("vnet0", "vnet1")
	h.helper("kvmnet-natup", "vnet0")
	h.helper("kvmnet-natup", "vnet1")
	if out, code := h.doctor(nil); code != 0 || !strings.Contains(out, "healthy") {
		t.Fatalf("doctor on a fresh network: exit %d:\n%s", code, out)
	}
	return h
}

// TestDoctor provokes each finding for real and checks doctor names it, and
// that --fix repairs what kvmnet owns.
func TestDoctor(t *testing.T) {
	t.Run("ip_forward", func(t *testing.T) {
		h := upHost(t)
		h.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=0")
		h.expectFinding("problem", "ip_forward is off", 1)
		h.fix()
		if h.Sysctl("net.ipv4.ip_forward") != "1" {
			t.Error("--fix left ip_forward off")
		}
	})
	t.Run("rules", func(t *testing.T) {
		h := upHost(t)
		want := h.IptablesSave()
		resume := h.Hold("default") // or its daemon heals the rules first
		h.MustRun("iptables", "-t", "nat", "-F")
		h.expectFinding("problem", "of kvmnet's rules are missing", 1)
		resume()
		h.fix()
		if got := h.IptablesSave(); got != want {
			t.Errorf("--fix did not restore the rules:\n--- want\n%s\n--- got\n%s", want, got)
		}
	})
	t.Run("address", func(t *testing.T) {
		h := upHost(t)
		h.MustRun("ip", "addr", "flush", "dev", "br0")
		h.expectFinding("problem", "gateway address is missing", 1)
		h.fix()
	})
	t.Run("daemon", func(t *testing.T) {
		h := upHost(t)
		pid := h.killDaemon()
		h.expectFinding("problem", "DHCP/DNS daemon is not running", 1)
		h.fix()
		if s := h.status().Networks[0].Services; !s.Running || s.PID == pid {
			t.Errorf("--fix did not restart the daemon: %+v", s)
		}
	})
	t.Run("forward-drop", func(t *testing.T) {
		h := upHost(t)
		// br_netfilter's switch is per namespace (Linux ≥ 5.3) and on by default.
		if strings.TrimSpace(h.MustRun("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables")) != "1" {
			t.Skip("br_netfilter not loaded, or bridge-nf-call-iptables off in a new namespace")
		}
		h.Hold("default") // or its daemon heals the rules first
		h.MustRun("iptables", "-P", "FORWARD", "DROP")
		h.expectFinding("info", "kvmnet's jump to KVMNET-FWD-default comes first", 0)
		h.MustRun("iptables", "-D", "FORWARD", "-m", "comment", "--comment", "kvmnet:default", "-j", "KVMNET-FWD-default")
		h.expectFinding("problem", "kvmnet's jump is missing", 1)
		h.fix()
		h.MustRun("iptables", "-I", "FORWARD", "1", "-i", "br+", "-j", "DROP")
		out := h.expectFinding("problem", "before kvmnet's jump", 1)
		if !strings.Contains(out, "-A FORWARD -i br+ -j DROP") {
			t.Errorf("the evidence does not show the rule:\n%s", out)
		}
		// kvmnet's jumps out of their place count as missing rules: --fix
		// puts them back above the DROP and leaves that rule as it is.
		h.fix()
		fwd := h.MustRun("iptables", "-S", "FORWARD")
		if !strings.Contains(fwd, "-A FORWARD -i br+ -j DROP") ||
			!strings.HasPrefix(strings.SplitN(fwd, "\n", 3)[1], `-A FORWARD -m comment --comment "kvmnet:default" -j KVMNET-GRD-default`) {
			t.Errorf("--fix did not put kvmnet's jumps above the other program's rule, or changed it:\n%s", fwd)
		}
	})
	t.Run("stp", func(t *testing.T) {
		h := upHost(t)
		h.MustRun("ip", "link", "set", "br0", "type", "bridge", "stp_state", "1", "forward_delay", "400")
		h.expectFinding("problem", "STP with forward delay on br0", 1)
		h.fix()
	})
	t.Run("mtu", func(t *testing.T) {
		h := upHost(t)
		// The bridge follows its smallest port unless its MTU was set: either
		// way one of the two taps now differs from it.
		h.MustRun("ip", "link", "set", "vnet0", "mtu", "1400")
		h.expectFinding("problem", "MTU differs from its bridge's", 1)
		h.fix()
	})
	t.Run("jumbo-mtu", func(t *testing.T) {
		// A port with a smaller MTU drags the bridge down with it; --fix
		// puts the bridge and kvmnet's taps back at the configured MTU
		// rather than shrink them to the smaller one.
		h := upHostWith(t, "[network.default]\nmtu = 9000\n")
		h.MustRun("ip", "link", "set", "vnet0", "mtu", "1500")
		h.expectFinding("problem", "MTU", 1)
		h.fix()
		for _, l := range []string{"br0", "vnet0", "vnet1"} {
			if out := h.MustRun("ip", "link", "show", l); !strings.Contains(out, "mtu 9000") {
				t.Errorf("after --fix: %s", out)
			}
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		// The record of an up killed before it installed the rules, as
		// TestKilledColdUp makes them: doctor names it, --fix undoes it.
		h := newHost(t, "")
		rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
		h.must("up", "default")
		resume := h.Hold("default") // or its daemon heals the rules first
		h.MustRun("iptables", "-t", "nat", "-F")
		if err := h.Do(func() error {
			d, err := state.Open()
			if err != nil {
				return err
			}
			rec, _, err := d.Load("default")
			rec.Pinned, rec.Doing, rec.RulesGen = false, "install rules for default", 0
			return errors.Join(err, d.Save(rec))
		}); err != nil {
			t.Fatal(err)
		}
		h.expectFinding("problem", "an up was killed halfway", 1)
		resume()
		if out, code := h.doctor(nil, "--fix"); code != 0 {
			t.Fatalf("doctor --fix: exit %d:\n%s", code, out)
		}
		h.AssertClean(rules, fwd)
	})
	t.Run("isolated-arp", func(t *testing.T) {
		h := newHost(t, "[network.iso]\nmode = \"isolated\"\n")
		h.taps("vnet0")
		h.helper("kvmnet-ifup@iso", "vnet0")
		h.MustRun("sysctl", "-qw", "net.ipv4.conf.iso.arp_ignore=0")
		h.expectFinding("problem", "answers ARP on the isolated bridge iso", 1)
		h.fix()
		if v := h.Sysctl("net.ipv4.conf.iso.arp_ignore"); v != "8" {
			t.Errorf("--fix left arp_ignore = %s", v)
		}
	})
	t.Run("same-mac", func(t *testing.T) {
		h := upHost(t)
		// libvirt gives a tap its guest's MAC with fe: first.
		for _, tap := range []string{"vnet0", "vnet1"} {
			h.MustRun("ip", "link", "set", tap, "address", "fe:54:00:aa:bb:01")
		}
		h.expectFinding("problem", "fe:54:00:aa:bb:01 on vnet0 and vnet1", 1)
	})
	t.Run("qemu-default-mac", func(t *testing.T) {
		h := upHost(t)
		guest := testns.New(t)
		h.MustRun("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", guest.Name)
		h.MustRun("ip", "link", "set", "veth0", "master", "br0", "up")
		guest.MustRun("ip", "link", "set", "eth0", "address", "52:54:00:12:34:56", "up")
		guest.MustRun("ip", "addr", "add", "192.168.100.50/24", "dev", "eth0")
		// Any packet to the gateway starts with an ARP request from the guest's MAC.
		guest.MustRun("bash", "-c", "echo > /dev/udp/192.168.100.1/9")
		learned := func() bool {
			return strings.Contains(h.MustRun("bridge", "fdb", "show", "br", "br0"), "52:54:00:12:34:56 dev veth0")
		}
		for i := 0; i < 100 && !learned(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		h.expectFinding("problem", "QEMU's default MAC 52:54:00:12:34:56 is in use", 1)
	})
	t.Run("overlap", func(t *testing.T) {
		h := newHost(t, "")
		h.MustRun("ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")
		h.MustRun("ip", "addr", "add", "192.168.0.1/16", "dev", "eth9")
		h.MustRun("ip", "link", "set", "eth9", "up")
		h.expectFinding("problem", "overlaps 192.168.0.1/16 on eth9", 1)
	})
	t.Run("iptables-missing", func(t *testing.T) {
		h := newHost(t, "")
		// PATH would not hide iptables: kvmnet looks in the system's
		// directories only. Empty them, in a private mount namespace.
		h.expectFinding("problem", "iptables is missing", 1, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
			`for d in /usr/sbin /sbin /bin /usr/bin; do [ -L $d ] || mount -t tmpfs none $d || exit 9; done; exec "$@"`, "sh")
	})
	t.Run("firewalld", func(t *testing.T) {
		// firewalld running is no finding: the network's daemon heals what
		// a reload takes (test/integration's TestFirewalld).
		h := upHost(t)
		fake := filepath.Join(t.TempDir(), "firewalld")
		sleep, err := exec.LookPath("sleep")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(sleep)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fake, b, 0o755); err != nil {
			t.Fatal(err)
		}
		fw := h.Cmd(fake, "60")
		if err := fw.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = fw.Process.Kill(); _ = fw.Wait() })
		if out, code := h.doctor(nil); code != 0 || strings.Contains(out, "firewalld") {
			t.Errorf("doctor with firewalld running: exit %d:\n%s", code, out)
		}
	})
	t.Run("watcher", func(t *testing.T) {
		h := newHost(t, "[network.default]\ndhcp = false\ndns = false\n")
		h.taps("vnet0")
		h.helper("kvmnet-natup", "vnet0")
		pid := strings.TrimSpace(h.MustRun("cat", h.State+"/default.watch.pid"))
		h.MustRun("kill", "-9", pid)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if s, ok := testhost.ProcState(pid); !ok || s == 'Z' {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the rule watcher survived SIGKILL")
			}
		}
		h.expectFinding("problem", "its rule watcher is not running", 1)
		h.fix()
		if now := strings.TrimSpace(h.MustRun("cat", h.State+"/default.watch.pid")); now == pid {
			t.Errorf("--fix did not start another rule watcher (pid %s)", now)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// killDaemon SIGKILLs the first network's DHCP/DNS daemon, waits until it is
// gone, and returns its pid.
func (h *host) killDaemon() int {
	h.T.Helper()
	pid := h.status().Networks[0].Services.PID
	h.MustRun("kill", "-9", itoa(pid))
	// SIGKILL is delivered at once, but the process is torn down after: its
	// memory (an empty cmdline) before its descriptors, whose ports and lease
	// lock a restart takes. Those go with its last thread: it is gone when
	// its main thread is a zombie and no other thread is left.
	testhost.WaitFor(h.T, func() bool {
		state, ok := testhost.ProcState(itoa(pid))
		tasks, _ := os.ReadDir("/proc/" + itoa(pid) + "/task")
		return !ok || (state == 'Z' || state == 'X') && len(tasks) <= 1
	}, &testhost.Buffer{})
	return pid
}

// TestFailedFixKeepsTheNetwork: a `doctor --fix` that cannot restart the
// daemon (its port taken) fails, but takes nothing from a network VMs use:
// the rules it put back stay, ip_forward stays on, and doctor still says the
// daemon is missing. (Its undo used to release ip_forward, turning it off
// under the VMs, delete the rules, and forget the daemon.) A VM's up that
// fails so keeps them too. Once the port is free, --fix works.
func TestFailedFixKeepsTheNetwork(t *testing.T) {
	h := newHostFW(t, "nftables", "")
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	want := h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet")
	h.killDaemon()
	h.MustRun("nft", "flush", "chain", "inet", "kvmnet", "nat-default")
	var taken net.PacketConn
	if err := h.Do(func() (err error) { taken, err = net.ListenPacket("udp4", "192.168.100.1:53"); return err }); err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	_, stderr, code := h.kvmnet(nil, "doctor", "--fix")
	if code != 1 || !strings.Contains(stderr, "dns listen udp 192.168.100.1:53") {
		t.Fatalf("doctor --fix with port 53 taken: exit %d (want 1), stderr:\n%s", code, stderr)
	}
	if got := h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet"); got != want {
		t.Errorf("the failed fix did not keep the rules it put back:\n--- want\n%s\n--- got\n%s", want, got)
	}
	if got := h.Sysctl("net.ipv4.ip_forward"); got != "1" {
		t.Errorf("the failed fix left ip_forward %s, want 1", got)
	}
	h.expectFinding("problem", "DHCP/DNS daemon is not running", 1)

	// A VM's up that puts back flushed rules, then fails at the daemon's
	// port, keeps them too: the VMs already on the network keep theirs.
	h.MustRun("nft", "flush", "chain", "inet", "kvmnet", "nat-default")
	h.taps("vnet1")
	if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, h.Program("kvmnet-natup"), "vnet1"); err == nil || !strings.Contains(e, "dns listen udp") {
		t.Fatalf("kvmnet-natup vnet1 with port 53 taken: %v, want it to fail at the daemon's port:\n%s", err, e)
	}
	if got := h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet"); got != want {
		t.Errorf("the failed up did not keep the rules it put back:\n--- want\n%s\n--- got\n%s", want, got)
	}
	if h.Master("vnet0") != "br0" || h.Master("vnet1") != "" || h.Sysctl("net.ipv4.ip_forward") != "1" {
		t.Errorf("after the failed up: vnet0 on %q (want br0), vnet1 on %q (want none), ip_forward %s (want 1)",
			h.Master("vnet0"), h.Master("vnet1"), h.Sysctl("net.ipv4.ip_forward"))
	}

	taken.Close()
	h.fix()
	if s := h.status().Networks[0].Services; !s.Running {
		t.Errorf("--fix did not start the daemon once its port was free: %+v", s)
	}
}

// TestNFTables: on the nftables backend, status names it, doctor finds rules
// a flush took, --fix puts them back, and the last down removes the table.
func TestNFTables(t *testing.T) {
	h := newHostFW(t, "nftables", "")
	before := h.MustRun("nft", "-s", "list", "ruleset")
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	if r := h.status("default").Networks[0].Rules; r.Firewall != "nftables" || !r.Checked || len(r.Missing) != 0 {
		t.Errorf("status rules = %+v, want nftables, checked, none missing", r)
	}
	if out := h.must("status"); !strings.Contains(out, "ok (nftables)") {
		t.Errorf("status table does not name the backend:\n%s", out)
	}
	want := h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet")
	resume := h.Hold("default") // or its daemon heals the rules first
	h.MustRun("nft", "flush", "chain", "inet", "kvmnet", "nat-default")
	out := h.expectFinding("problem", "of kvmnet's rules are missing (nftables backend", 1)
	if !strings.Contains(out, "inet kvmnet nat-default: ip saddr 192.168.100.0/24") {
		t.Errorf("the evidence does not show a missing rule:\n%s", out)
	}
	resume()
	h.fix()
	if got := h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet"); got != want {
		t.Errorf("--fix did not restore the table:\n--- want\n%s\n--- got\n%s", want, got)
	}
	if out, code := h.doctor(nil); code != 0 || !strings.Contains(out, `firewall: nftables (firewall = "nftables")`) {
		t.Errorf("healthy doctor does not name the backend: exit %d:\n%s", code, out)
	}
	if out, code := h.doctor([]string{"PATH=/nonexistent"}); code != 0 || strings.Contains(out, "iptables is missing") {
		t.Errorf("doctor without iptables on the nftables backend: exit %d:\n%s", code, out)
	}
	h.helper("kvmnet-natdown", "vnet0")
	if got := h.MustRun("nft", "-s", "list", "ruleset"); got != before {
		t.Errorf("ruleset after the last down:\n%s\nwant:\n%s", got, before)
	}
}
