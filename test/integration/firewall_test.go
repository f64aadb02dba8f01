package integration

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// guest stands in for a VM: a namespace behind a veth whose host end, tap,
// is what kvmnet attaches, with addr on its eth0 and a default route via gw.
func (h *host) guest(tap, addr, gw string) *testns.NS {
	h.T.Helper()
	g := testns.New(h.T)
	h.MustRun("ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	g.MustRun("ip", "link", "set", "eth0", "up")
	if addr != "" {
		g.MustRun("ip", "addr", "add", addr, "dev", "eth0")
		g.MustRun("ip", "route", "add", "default", "via", gw)
	}
	return g
}

// outside is a host beyond the hypervisor's uplink, 203.0.113.2, with no
// route back to any guest subnet: only masqueraded packets get answers. It
// returns the host's namespace, for a test that gives it routes.
func (h *host) outside() *testns.NS {
	h.T.Helper()
	o := testns.New(h.T)
	h.MustRun("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", o.Name)
	h.MustRun("ip", "addr", "add", "203.0.113.1/24", "dev", "uplink")
	h.MustRun("ip", "link", "set", "uplink", "up")
	o.MustRun("ip", "addr", "add", "203.0.113.2/24", "dev", "eth0")
	o.MustRun("ip", "link", "set", "eth0", "up")
	// The uplink shows UP once its peer is up, a moment later: wait, so that
	// the links the test takes as "before" are settled.
	testhost.WaitFor(h.T, func() bool { return strings.Contains(h.Links(), "uplink@if2 UP") }, &testhost.Buffer{})
	return o
}

// reaches reports whether g gets an answer from the outside host, to any of
// a few pings: a ping that failed before leaves the gateway's ARP entry
// FAILED, and the first one after may meet it.
func reaches(g *testns.NS) bool {
	_, _, err := g.Run("ping", "-c", "4", "-i", "0.5", "-W", "1", "203.0.113.2")
	return err == nil
}

var saveNoise = regexp.MustCompile(`(?m)^#.*\n| \[\d+:\d+\]`)

// save is `PROG-save` without its comments and counters.
func (h *host) save(prog string) string {
	return saveNoise.ReplaceAllString(h.MustRun(prog+"-save"), "")
}

// dockerLike leaves what Docker leaves in the filter table, with the
// iptables flavour ipt: a FORWARD DROP policy and its DOCKER-USER chain.
func (h *host) dockerLike(ipt string) {
	for _, r := range [][]string{{"-N", "DOCKER-USER"}, {"-A", "DOCKER-USER", "-j", "RETURN"}, {"-A", "FORWARD", "-j", "DOCKER-USER"}, {"-P", "FORWARD", "DROP"}} {
		h.MustRun(append([]string{ipt}, r...)...)
	}
}

// TestGuestsBesideForwardDrop: a guest on a NAT network reaches the outside
// host through a FORWARD DROP policy that Docker left, in iptables-nft or in
// iptables-legacy, or that a hand-written nftables table has, with each
// backend that can get past it; the last down leaves iptables-save,
// iptables-legacy-save and nft's ruleset as they were.
func TestGuestsBesideForwardDrop(t *testing.T) {
	for _, tc := range []struct{ name, fw, ipt string }{
		{"nftables beside iptables-nft", "nftables", "iptables-nft"},
		{"nftables beside iptables-legacy", "nftables", "iptables-legacy"},
		{"auto beside iptables-legacy", "", "iptables-legacy"}, // iptables is iptables-nft here: auto takes nftables
		{"iptables beside iptables-nft", "iptables", "iptables-nft"},
		{"nftables beside an inet filter table", "nftables", "nft"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, tc.fw, "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n")
			if tc.ipt == "nft" {
				h.MustRun("nft", "add table inet filter; add chain inet filter forward { type filter hook forward priority 0; policy drop; }")
			} else {
				h.dockerLike(tc.ipt)
			}
			h.outside()
			h.SetLinks(h.Links())
			rules, legacy, fwd := h.rules(), h.save("iptables-legacy"), h.Sysctl("net.ipv4.ip_forward")
			g := h.guest("vnet0", "192.168.100.10/24", "192.168.100.1")
			if reaches(g) {
				t.Fatal("the guest reaches the outside before any up: the test proves nothing")
			}
			h.mustHelper("kvmnet-natup", "vnet0")
			if !reaches(g) {
				t.Errorf("the guest does not reach the outside host:\n%s\n%s", h.IptablesSave(), h.MustRun("nft", "-s", "list", "ruleset"))
			}
			if tc.fw != "iptables" && tc.ipt != "nft" {
				// The shim is what gets the guest past the DROP, and the next
				// up puts it back when someone takes it out (the network's
				// rule watcher, which would heal it first, held meanwhile:
				// TestRulesHeal tests it).
				shim := []string{"FORWARD", "-s", "192.168.100.0/24", "-i", "br0", "-m", "comment", "--comment", "kvmnet:default", "-j", "ACCEPT"}
				resume := h.Hold("default")
				h.MustRun(append([]string{tc.ipt, "-D"}, shim...)...)
				if reaches(g) {
					t.Errorf("the guest reaches the outside without kvmnet's accept in %s's FORWARD", tc.ipt)
				}
				h.mustHelper("kvmnet-natup", "vnet0")
				if _, _, err := h.Run(append([]string{tc.ipt, "-C"}, shim...)...); err != nil || !reaches(g) {
					t.Errorf("the next up did not put kvmnet's accept back in %s's FORWARD:\n%s", tc.ipt, h.save(tc.ipt))
				}
				resume()
			}
			h.mustHelper("kvmnet-natdown", "vnet0")
			h.MustRun("ip", "link", "del", "vnet0")
			h.assertClean(rules, fwd)
			if got := h.save("iptables-legacy"); got != legacy {
				t.Errorf("iptables-legacy-save differs from before:\n--- before\n%s\n--- after\n%s", legacy, got)
			}
		})
	}
}

// TestNoIptablesPrograms: on a host with no iptables program at all, no
// firewall configuration gives the nftables backend: a guest gets a DHCP lease
// and reaches the outside host, and the last down leaves nft's ruleset as it
// was. (ports = "any" only lets the test's guest, a veth, stand for a VM's tap.)
func TestNoIptablesPrograms(t *testing.T) {
	h := newHost(t, "", "[network.default]\nports = \"any\"\n")
	h.outside()
	h.SetLinks(h.Links())
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	g := h.guest("vnet0", "", "")
	empty := []string{"PATH=" + t.TempDir()}
	if stderr, err := h.helper("kvmnet-natup", "vnet0", empty...); err != nil {
		t.Fatalf("natup with no iptables: %v\n%s", err, stderr)
	}
	if _, _, err := h.Run("nft", "list", "table", "inet", "kvmnet"); err != nil {
		t.Errorf("no table inet kvmnet: the nftables backend was not chosen: %v", err)
	}
	if _, stderr, err := g.Run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-s", "/bin/true"); err != nil {
		t.Errorf("no DHCP lease: %v\n%s", err, stderr)
	}
	g.MustRun("ip", "addr", "add", "192.168.100.10/24", "dev", "eth0")
	g.MustRun("ip", "route", "add", "default", "via", "192.168.100.1")
	if !reaches(g) {
		t.Errorf("the guest does not reach the outside host:\n%s", h.MustRun("nft", "-s", "list", "ruleset"))
	}
	if stderr, err := h.helper("kvmnet-natdown", "vnet0", empty...); err != nil {
		t.Fatalf("natdown with no iptables: %v\n%s", err, stderr)
	}
	h.MustRun("ip", "link", "del", "vnet0")
	h.assertClean(rules, fwd)
}

// TestNoExecOnNFTPath: on the nftables path, cold up, warm up, down and last
// down beside an iptables-nft FORWARD DROP (so that the shim is written)
// exec no nft and no iptables program: PATH holds only stubs of them that
// log and fail, and strace sees the helper exec nothing but the kvmnet
// binary beside it (the engine, which the tap scripts' fronts hand every
// run but a warm one to).
func TestNoExecOnNFTPath(t *testing.T) {
	h := newHost(t, "nftables", "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n")
	h.dockerLike("iptables-nft")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	stubs := t.TempDir()
	log := filepath.Join(t.TempDir(), "exec.log")
	for _, p := range []string{"nft", "iptables", "iptables-save", "iptables-restore", "iptables-nft", "iptables-nft-save",
		"iptables-nft-restore", "iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore", "ip6tables",
		"xtables-nft-multi", "xtables-legacy-multi"} {
		if err := os.WriteFile(filepath.Join(stubs, p), []byte("#!/bin/sh\necho \"$0 $*\" >> "+log+"\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=" + stubs}
	taps := h.taps("vnet", 2)
	strace, _ := exec.LookPath("strace")
	trace := filepath.Join(t.TempDir(), "strace")
	for _, step := range []struct{ prog, tap string }{{"kvmnet-natup", taps[0]}, {"kvmnet-natup", taps[1]}, {"kvmnet-natdown", taps[0]}, {"kvmnet-natdown", taps[1]}} {
		if stderr, err := h.traced(strace, trace, step.prog, step.tap, env...); err != nil {
			t.Fatalf("%s %s: %v\n%s", step.prog, step.tap, err, stderr)
		}
		if step.prog == "kvmnet-natup" && !strings.Contains(h.IptablesSave(), "kvmnet:default") {
			t.Errorf("%s %s: no shim in iptables-nft's FORWARD", step.prog, step.tap)
		}
		if b, err := os.ReadFile(trace); err == nil {
			// The helper's own; for any run but a warm one, its hand-over
			// to kvmnet beside it (package warm); for the first up, the
			// network's rule watcher, kvmnet-netsvc; and for a last down,
			// the teardown child, kvmnet again.
			own := `execve("` + h.Program(step.prog) + `"`
			engine := `execve("` + filepath.Join(bin, "kvmnet") + `"`
			watcher := `execve("` + filepath.Join(bin, "kvmnet-netsvc") + `"`
			if n := strings.Count(string(b), "execve("); n != strings.Count(string(b), own)+strings.Count(string(b), engine)+strings.Count(string(b), watcher) || n > 3 {
				t.Errorf("%s %s: strace saw %d execs, want the helper's own (and kvmnet's):\n%s", step.prog, step.tap, n, b)
			}
		}
	}
	if b, err := os.ReadFile(log); err == nil {
		t.Errorf("the nftables path ran:\n%s", b)
	}
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// traced runs helper prog under strace (when there is one; "" runs it
// alone), following its children, into trace. It returns once the helper
// has exited, not the processes it started (the network's rule watcher,
// which lives until the last down): strace then lets go of them.
func (h *host) traced(strace, trace, prog, tap string, env ...string) (stderr string, err error) {
	if strace == "" {
		return h.helper(prog, tap, env...)
	}
	if err := os.Remove(trace); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	argv := append(append([]string{"env", "KVMNET_CONFIG=" + h.Config}, env...),
		strace, "-f", "-q", "-I", "1", "-e", "trace=execve", "-o", trace, h.Program(prog), tap)
	var e testhost.Buffer
	c := h.Cmd(argv...)
	c.Stderr = &e
	if err := c.Start(); err != nil {
		return "", err
	}
	// The helper is strace's only child, which it makes before it writes
	// the trace's first line. Once it is gone, SIGINT makes strace (-I 1)
	// let go of what it still traces (the helper's children), write its
	// trace and exit. The helper's exit status is strace's, and may not be
	// in the trace yet: the helper's own line tells success.
	testhost.WaitFor(h.T, func() bool {
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.Process.Pid, c.Process.Pid))
		st, err := os.Stat(trace)
		return err == nil && st.Size() > 0 && len(strings.TrimSpace(string(children))) == 0
	}, &e)
	_ = c.Process.Signal(syscall.SIGINT)
	_ = c.Wait()
	verb := "up"
	if strings.HasSuffix(prog, "down") {
		verb = "down"
	}
	if !regexp.MustCompile(`(?m)^` + prog + `: ` + verb + ` tap=` + tap + ` `).MatchString(e.String()) {
		return e.String(), fmt.Errorf("%s %s failed", prog, tap)
	}
	return e.String(), nil
}

// TestSwitchRefused: a network up with one backend refuses an up whose
// configuration names the other, and the last down still removes its rules.
func TestSwitchRefused(t *testing.T) {
	h := newHost(t, "nftables", "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 2)
	h.mustHelper("kvmnet-natup", taps[0])
	up := h.rules()
	conf, err := os.ReadFile(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.Config, []byte(strings.Replace(string(conf), `firewall = "nftables"`, `firewall = "iptables"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, err := h.helper("kvmnet-natup", taps[1])
	want := "network default is up with firewall nftables, the configuration asks for iptables"
	if err == nil || !strings.Contains(stderr, want) {
		t.Errorf("switching backend while up: %v, stderr %q; want an error containing %q", err, stderr, want)
	}
	if got := h.rules(); got != up {
		t.Errorf("the refused up changed the rules:\n%s", got.nft)
	}
	h.mustHelper("kvmnet-natdown", taps[0])
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}
