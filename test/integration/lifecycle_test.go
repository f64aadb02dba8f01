package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNATLifecycle: the first up makes the network, later ups add nothing,
// downs keep it until the last, and the last leaves the namespace as it was,
// with Docker's and libvirt's rules untouched throughout.
func TestNATLifecycle(t *testing.T) { matrix(t, testNATLifecycle) }

func testNATLifecycle(t *testing.T, fw string) {
	h := newHost(t, fw, "")
	h.foreignRules()
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 3)

	h.mustHelper("kvmnet-natup", taps[0])
	if h.Master(taps[0]) != "br0" {
		t.Fatalf("%s is not on br0", taps[0])
	}
	if out := h.MustRun("ip", "-4", "-o", "addr", "show", "dev", "br0"); !strings.Contains(out, "192.168.100.1/24") {
		t.Errorf("br0 has no gateway address: %s", out)
	}
	if h.Sysctl("net.ipv4.ip_forward") != "1" {
		t.Error("ip_forward is off after natup")
	}
	if !strings.Contains(h.MustRun("ip", "-d", "link", "show", "br0"), "stp_state 0") {
		t.Error("br0 has STP on")
	}
	first := h.rules()
	if !strings.Contains(first.ipt, "-A DOCKER-USER -j RETURN") {
		t.Errorf("Docker's rules went missing:\n%s", first)
	}
	record := h.recordInode()
	for _, tap := range taps[1:] {
		h.mustHelper("kvmnet-natup", tap)
	}
	if h.recordInode() != record {
		t.Error("a warm up rewrote the network's record")
	}
	if got := h.rules(); got != first {
		t.Errorf("more ups changed the rules:\n--- after one\n%s\n--- after three\n%s", first, got)
	}
	for _, tap := range taps[:2] {
		h.mustHelper("kvmnet-natdown", tap)
		if !h.Exists("br0") || h.kvmnetRules() == 0 {
			t.Fatalf("network gone after the down of %s while %s is up", tap, taps[2])
		}
	}
	h.mustHelper("kvmnet-natdown", taps[2])
	h.mustHelper("kvmnet-natdown", taps[2]) // twice: quietly nothing
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// TestAdminBridgeKept: a bridge the admin made, with a port of its own, and
// named in the network's section, is used and never deleted, and ip_forward
// the admin turned on stays on. (Not named, it is refused:
// TestAdminBridgeNotTaken.)
func TestAdminBridgeKept(t *testing.T) { matrix(t, testAdminBridgeKept) }

func testAdminBridgeKept(t *testing.T, fw string) {
	h := newHost(t, fw, "[network.default]\nbridge = \"br0\"\n")
	h.MustRun("ip", "link", "add", "br0", "type", "bridge")
	h.MustRun("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	h.MustRun("ip", "link", "set", "eth1", "master", "br0")
	h.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	rules := h.rules()
	tap := h.taps("vnet", 1)[0]
	stderr, err := h.helper("kvmnet-natup", tap)
	if err != nil || h.Master(tap) != "br0" {
		t.Fatalf("tap not on the admin's br0: %v %s", err, stderr)
	}
	// ip_forward was on, and stays as it was: no change to report.
	if strings.Contains(stderr, "ip_forward") {
		t.Errorf("natup reports a change of ip_forward it did not make: %s", stderr)
	}
	// A down of a port kvmnet did not attach leaves it where it is.
	h.mustHelper("kvmnet-natdown", "eth1")
	if h.Master("eth1") != "br0" || h.Master(tap) != "br0" {
		t.Fatalf("natdown eth1 moved a port: eth1 on %q, %s on %q", h.Master("eth1"), tap, h.Master(tap))
	}
	if stderr, err = h.helper("kvmnet-natdown", tap); err != nil || strings.Contains(stderr, "ip_forward") {
		t.Errorf("natdown: %v, reports a change of ip_forward it did not make: %s", err, stderr)
	}
	h.MustRun("ip", "link", "del", tap)
	if h.Master("eth1") != "br0" {
		t.Error("the admin's port left br0")
	}
	if out := h.MustRun("ip", "-4", "-o", "addr", "show", "dev", "br0"); out != "" {
		t.Errorf("kvmnet's address stayed on br0: %s", out)
	}
	h.MustRun("ip", "link", "del", "br0")
	h.MustRun("ip", "link", "del", "eth1")
	h.assertClean(rules, "1")
}

// TestGolden pins every rule kvmnet makes, per mode: for iptables as
// iptables-save prints it (NAME.golden), for nftables as `nft -s list table
// inet kvmnet` does (NAME.nft.golden).
func TestGolden(t *testing.T) { matrix(t, testGolden) }

func testGolden(t *testing.T, fw string) {
	for _, tc := range []struct{ name, config, prog string }{
		{"nat-default", "", "kvmnet-natup"},
		{"isolated-default", "", "kvmnet-ifup"},
		{"hostonly", "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n", "kvmnet-ifup@lab"},
		{"nat-no-services", "[network.lab]\nbridge = \"kvlab0\"\nmode = \"nat\"\naddress = \"10.77.0.1/24\"\ndhcp = false\ndns = false\n", "kvmnet-natup@lab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, fw, tc.config)
			tap := h.taps("vnet", 1)[0]
			h.mustHelper(tc.prog, tap)
			if fw == "nftables" {
				golden(t, tc.name+".nft", h.MustRun("nft", "-s", "list", "table", "inet", "kvmnet"))
			} else {
				golden(t, tc.name, h.IptablesSave())
			}
			h.mustHelper(strings.Replace(tc.prog, "up", "down", 1), tap)
		})
	}
}

// TestConcurrentColdStart: 32 VMs start at once on a network that does not
// exist yet, then stop at once; every round ends clean.
func TestConcurrentColdStart(t *testing.T) { matrix(t, testConcurrentColdStart) }

func testConcurrentColdStart(t *testing.T, fw string) {
	h := newHost(t, fw, "")
	h.foreignRules()
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 32)
	var once ruleset
	for round := 0; round < 3; round++ {
		errs := h.all("kvmnet-natup", taps)
		for i, tap := range taps {
			if errs[i] != nil {
				t.Errorf("round %d: natup %s: %v", round, tap, errs[i])
			} else if m := h.Master(tap); m != "br0" {
				t.Errorf("round %d: natup %s succeeded but it is on %q", round, tap, m)
			}
		}
		got := h.rules()
		if once == (ruleset{}) {
			once = got
		} else if got != once {
			t.Errorf("round %d: rules differ from round 0:\n%s", round, got)
		}
		for i, err := range h.all("kvmnet-natdown", taps) {
			if err != nil {
				t.Errorf("round %d: natdown %s: %v", round, taps[i], err)
			}
		}
		h.Settle()
		if h.Exists("br0") || h.kvmnetRules() != 0 {
			t.Fatalf("round %d: network left after every VM went", round)
		}
	}
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// all runs prog for every tap at the same moment.
func (h *host) all(prog string, taps []string) []error {
	errs := make([]error, len(taps))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, tap := range taps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if stderr, err := h.helper(prog, tap); err != nil {
				errs[i] = fmt.Errorf("%w: %s", err, stderr)
			}
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// TestSelfHealing: a firewall reload that flushes every NAT rule, and
// ip_forward turned off, are put right by the next VM's up.
func TestSelfHealing(t *testing.T) { matrix(t, testSelfHealing) }

func testSelfHealing(t *testing.T, fw string) {
	h := newHost(t, fw, "")
	taps := h.taps("vnet", 2)
	h.mustHelper("kvmnet-natup", taps[0])
	want := h.rules()
	h.breakRules()
	h.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=0")
	h.mustHelper("kvmnet-natup", taps[1])
	if got := h.rules(); got != want {
		t.Errorf("rules not healed:\n--- want\n%s\n--- got\n%s", want, got)
	}
	if h.Sysctl("net.ipv4.ip_forward") != "1" {
		t.Error("ip_forward not healed")
	}
	for _, tap := range taps {
		h.mustHelper("kvmnet-natdown", tap)
	}
	h.Settle()
	if h.Sysctl("net.ipv4.ip_forward") != "0" || h.Exists("br0") || h.kvmnetRules() != 0 {
		t.Error("last down left the network")
	}
}

// TestSigkilledVMIsReclaimed: a VM killed without its downscript leaves its
// tap's record behind; the last other VM's down still tears the network down.
func TestSigkilledVMIsReclaimed(t *testing.T) { matrix(t, testSigkilledVMIsReclaimed) }

func testSigkilledVMIsReclaimed(t *testing.T, fw string) {
	h := newHost(t, fw, "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 2)
	for _, tap := range taps {
		h.mustHelper("kvmnet-natup", tap)
	}
	h.MustRun("ip", "link", "del", taps[0]) // what the kernel does when QEMU dies
	h.mustHelper("kvmnet-natdown", taps[1])
	h.MustRun("ip", "link", "del", taps[1])
	h.assertClean(rules, fwd)
}

// TestQEMU runs the helpers the way QEMU does, and checks `quit` leaves nothing.
func TestQEMU(t *testing.T) { matrix(t, testQEMU) }

func testQEMU(t *testing.T, fw string) {
	h := newHost(t, fw, "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	q := h.StartQEMU()
	if h.Master("vnet0") != "br0" {
		t.Errorf("vnet0 not on br0 while QEMU runs:\n%s", q.Out)
	}
	q.Quit()
	h.assertClean(rules, fwd)
}

// TestEmptyEnvironment: a caller that passes no environment at all (no PATH)
// still gets its network; iptables is found where Debian puts it.
func TestEmptyEnvironment(t *testing.T) { matrix(t, testEmptyEnvironment) }

func testEmptyEnvironment(t *testing.T, fw string) {
	h := newHost(t, fw, "[network.default]\ndhcp = false\ndns = false\n")
	tap := h.taps("vnet", 1)[0]
	for _, prog := range []string{"kvmnet-natup", "kvmnet-natdown"} {
		if _, stderr, err := h.Run("env", "-i", "KVMNET_CONFIG="+h.Config, bin+"/"+prog, tap); err != nil {
			t.Fatalf("%s with no PATH: %v\n%s", prog, err, stderr)
		}
	}
	h.Settle()
	if h.kvmnetRules() != 0 || h.Exists("br0") {
		t.Error("network left after the down")
	}
}

// TestLeaseFilePerNamespace: two namespaces running the default network with
// one lease_dir each get a lease file of their own (named after the
// namespace), and both daemons run.
func TestLeaseFilePerNamespace(t *testing.T) {
	shared := t.TempDir()
	for _, h := range []*host{newHost(t, "", ""), newHost(t, "", "")} {
		if err := os.WriteFile(h.Config, []byte(fmt.Sprintf("lease_dir = %q\n", shared)), 0o644); err != nil {
			t.Fatal(err)
		}
		h.taps("vnet", 1)
		h.mustHelper("kvmnet-natup", "vnet0")
		t.Cleanup(func() { h.mustHelper("kvmnet-natdown", "vnet0") })
		lock := filepath.Join(shared, "default@"+h.Name+".leases.lock")
		if _, err := os.Stat(lock); err != nil {
			t.Errorf("namespace %s: no lease file lock of its own: %v", h.Name, err)
		}
	}
}

// TestBadLeaseFile: an empty lease file, or a link planted in its place, does
// not stop the network: the up succeeds, the bad file is set aside as
// .corrupt, and a link's target is neither read nor written.
func TestBadLeaseFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(path, target string) error
	}{
		{"empty", func(path, _ string) error { return os.WriteFile(path, nil, 0o644) }},
		{"symlink", func(path, target string) error { return os.Symlink(target, path) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, "", "")
			dir := filepath.Dir(h.Config)
			lease := filepath.Join(dir, "default@"+h.Name+".leases")
			target := filepath.Join(t.TempDir(), "precious")
			if err := os.WriteFile(target, []byte("not a lease file\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(lease, target); err != nil {
				t.Fatal(err)
			}
			h.taps("vnet", 1)
			h.mustHelper("kvmnet-natup", "vnet0")
			// The up does not wait for the daemon to serve; it sets the file
			// aside as it starts.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				_, err := os.Lstat(lease + ".corrupt")
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("bad lease file not set aside: %v", err)
				}
			}
			h.mustHelper("kvmnet-natdown", "vnet0")
			h.Settle() // the daemon writes its leases as it exits, after the down returned
			if fi, err := os.Lstat(lease); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("no fresh lease file after the down: %v %v", fi, err)
			}
			if b, err := os.ReadFile(target); err != nil || string(b) != "not a lease file\n" {
				t.Errorf("link target changed: %q %v", b, err)
			}
		})
	}
}

// TestHandPortKeepsNetwork: on a bridge kvmnet made, a port someone attached
// by hand keeps the whole network up past its last VM, and is never detached
// by a down; `kvmnet down --force` takes the network down, the port with it.
func TestHandPortKeepsNetwork(t *testing.T) {
	h := newHost(t, "iptables", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	tap := h.taps("vnet", 1)[0]
	h.mustHelper("kvmnet-natup", tap)
	h.MustRun("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	h.MustRun("ip", "link", "set", "eth1", "master", "br0")
	h.mustHelper("kvmnet-natdown", tap)
	if h.Master("eth1") != "br0" || h.kvmnetRules() == 0 {
		t.Fatal("the last VM's down took the network, or the hand-attached port, away")
	}
	h.operator("down", "default", "--force")
	if h.Exists("br0") || h.Master("eth1") != "" {
		t.Error("kvmnet down --force left the bridge, or eth1 on it")
	}
	h.MustRun("ip", "link", "del", "eth1")
	h.MustRun("ip", "link", "del", tap)
	h.assertClean(rules, fwd)
}
