package operator

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// olderRelease is the kvmnet the upgrade test starts from: the commit before
// per-namespace lease files (NAME@NETNS.leases), which knows neither the
// nftables backend, nor version stamps, nor `ports`, and whose iptables rules
// differ from today's.
const olderRelease = "614b5ee^"

// olderBinaries builds olderRelease's helpers and kvmnet, from `git archive`
// (no worktree, nothing of the repository changed), into a cache directory
// named by the commit under the system's temporary directory, which later runs
// reuse, and returns it. Never bin/.
func olderBinaries(t *testing.T) string {
	t.Helper()
	commit := strings.TrimSpace(run(t, "git", "-C", "../..", "rev-parse", olderRelease))
	dir := filepath.Join(os.TempDir(), "kvmnet-release-"+commit)
	if _, err := os.Stat(filepath.Join(dir, "kvmnet")); err == nil {
		return dir
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "kvmnet-release-build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	src, out := filepath.Join(tmp, "src"), filepath.Join(tmp, "bin")
	for _, d := range []string{src, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	archive := exec.Command("git", "-C", "../..", "archive", commit)
	tar := exec.Command("tar", "-x", "-C", src)
	var stderr bytes.Buffer
	tar.Stdin, _ = archive.StdoutPipe()
	archive.Stderr, tar.Stderr = &stderr, &stderr
	if err := tar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", commit, err, stderr.String())
	}
	if err := tar.Wait(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", commit, err, stderr.String())
	}
	for out1, cmd := range map[string]string{"kvmnet": "kvmnet", "kvmnet-natup": "qemu-natup", "kvmnet-natdown": "qemu-natdown"} {
		b := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -X github.com/kvmnet/kvmnet/internal/version.Version=older", "-o", filepath.Join(out, out1), "./cmd/"+cmd)
		b.Dir, b.Env = src, append(os.Environ(), "CGO_ENABLED=0")
		if o, err := b.CombinedOutput(); err != nil {
			t.Fatalf("build %s of %s: %v\n%s", out1, commit, err, o)
		}
	}
	if err := os.Rename(out, dir); err != nil {
		// Another test process built it meanwhile: theirs is as good.
		if _, serr := os.Stat(filepath.Join(dir, "kvmnet")); serr != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestUpgradeDowngrade runs an older release's helpers and today's on one
// network with VMs up, both ways. Upgrade: doctor says whose the old rules
// are and exits 0; the next up rewrites them; the guest's lease follows the
// lease file to its per-namespace name and the guest keeps its address.
// Downgrade: the older release tears the network down knowing only its
// iptables rules, leaving inet kvmnet; doctor reports those rules and gc
// removes them. A lost record: doctor names kvmnet's own bridge and gateway
// as left over, not as an overlapping subnet, and down --all removes the rules.
func TestUpgradeDowngrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an older release: skipped with -short")
	}
	old := olderBinaries(t)
	h := newHostFW(t, "auto", "[network.default]\nports = \"any\"\n")
	leaseDir := filepath.Dir(h.Config)
	oldConf := filepath.Join(t.TempDir(), "old.toml") // what the older release parses
	if err := os.WriteFile(oldConf, []byte("lease_dir = "+`"`+leaseDir+`"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	helper := func(dir, conf, prog, port string) {
		t.Helper()
		if _, e, err := h.Run("env", "KVMNET_CONFIG="+conf, filepath.Join(dir, prog), port); err != nil {
			t.Fatalf("%s %s %s: %v\n%s", dir, prog, port, err, e)
		}
	}
	oldHelper := func(prog, port string) { helper(old, oldConf, prog, port) }
	newHelper := func(prog, port string) { helper(bin, h.Config, prog, port) }
	doctor := func() (string, int) {
		out, e, code := h.kvmnet(nil, "doctor")
		return out + e, code
	}
	lease1 := vmGuest(t, h, "g1", "52:54:00:0d:00:01")
	lease2 := vmGuest(t, h, "g2", "52:54:00:0d:00:02")

	// The older release brings the network up for g1.
	oldHelper("kvmnet-natup", "g1")
	ip1, _ := lease1()

	t.Run("upgrade", func(t *testing.T) {
		out, code := doctor()
		if code != 0 || !strings.Contains(out, "info: network default: rules from an older kvmnet (its record names no version), replaced at next up or doctor --fix") {
			t.Errorf("doctor after the upgrade: exit %d, want 0 and the older rules named:\n%s", code, out)
		}
		// status says the same of them as doctor, not "N MISSING".
		if out := h.must("status"); strings.Contains(out, "MISSING") ||
			!strings.Contains(out, "from an older kvmnet (its record names no version), replaced at next up or doctor --fix (iptables)") {
			t.Errorf("status after the upgrade does not name the older rules:\n%s", out)
		}
		if r := h.status().Networks[0].Rules; r.Older != "an older kvmnet (its record names no version)" || len(r.Missing) == 0 {
			t.Errorf("status --json after the upgrade: rules %+v, want older named beside what differs", r)
		}
		newHelper("kvmnet-natup", "g2") // rewrites the rules, restarts the daemon on the new lease file
		if ip2, _ := lease2(); ip2 == ip1 || !strings.HasPrefix(ip2, "192.168.100.") {
			t.Errorf("g2 leased %s beside g1's %s", ip2, ip1)
		}
		if again, _ := lease1(); again != ip1 {
			t.Errorf("g1 leased %s after the upgrade, had %s: its lease did not follow the lease file", again, ip1)
		}
		ns := "default@" + h.Name + ".leases"
		if _, err := os.Stat(filepath.Join(leaseDir, ns)); err != nil {
			t.Errorf("no %s after the upgrade: %v", ns, err)
		}
		if _, err := os.Stat(filepath.Join(leaseDir, "default.leases")); err == nil {
			t.Errorf("default.leases is still there beside %s", ns)
		}
		if out, code := doctor(); code != 0 || !strings.HasPrefix(out, "healthy") {
			t.Errorf("doctor after the next up: exit %d\n%s", code, out)
		}
		newHelper("kvmnet-natdown", "g1")
		newHelper("kvmnet-natdown", "g2")
		h.Settle()
	})

	t.Run("downgrade", func(t *testing.T) {
		newHelper("kvmnet-natup", "g1")
		if again, _ := lease1(); again != ip1 {
			t.Errorf("g1 leased %s on today's network, had %s", again, ip1)
		}
		if tables := h.MustRun("nft", "list", "tables"); !strings.Contains(tables, "inet kvmnet") {
			t.Fatalf("today's up made no inet kvmnet (auto picked iptables?):\n%s", tables)
		}
		// The older release takes over: an up beside g1, then both downs.
		oldHelper("kvmnet-natup", "g2")
		ip2, _ := lease2()
		oldHelper("kvmnet-natdown", "g1")
		oldHelper("kvmnet-natdown", "g2")
		h.Settle()
		out, code := doctor()
		want := "problem: network default: kvmnet's nftables rules of a network that is not up are left over"
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("doctor after the downgrade's teardown: exit %d, want 1 and %q:\n%s", code, want, out)
		}
		if _, e, code := h.kvmnet(nil, "gc"); code != 0 || !strings.Contains(e, "remove left-over nftables rules of default") {
			t.Errorf("gc: exit %d\n%s", code, e)
		}
		if tables := h.MustRun("nft", "list", "tables"); strings.Contains(tables, "inet kvmnet") {
			t.Errorf("inet kvmnet is still there after gc:\n%s", tables)
		}
		if out, code := doctor(); code != 0 || !strings.HasPrefix(out, "healthy") {
			t.Errorf("doctor after gc: exit %d\n%s", code, out)
		}
		// The older release's next up reads default.leases: today's daemon
		// left its leases there as it exited, so g2, the first to ask the
		// older daemon, gets its own address back, not the first free one (g1's).
		oldHelper("kvmnet-natup", "g2")
		if again, _ := lease2(); again != ip2 {
			t.Errorf("g2 leased %s from the older release after the downgrade, had %s", again, ip2)
		}
	})

	t.Run("upgrade again", func(t *testing.T) {
		// g3 leases from the older daemon only; today's up restarts the
		// daemon, which takes the older daemon's file back, newer than
		// today's from before the downgrade: g4 gets an address of its own,
		// and g3 keeps its.
		lease3 := vmGuest(t, h, "g3", "52:54:00:0d:00:03")
		lease4 := vmGuest(t, h, "g4", "52:54:00:0d:00:04")
		oldHelper("kvmnet-natup", "g3")
		ip3, _ := lease3()
		newHelper("kvmnet-natup", "g4")
		if ip4, _ := lease4(); ip4 == ip3 {
			t.Errorf("g4 leased g3's %s after the upgrade: the older daemon's leases were lost", ip3)
		}
		if again, _ := lease3(); again != ip3 {
			t.Errorf("g3 leased %s after the upgrade, had %s", again, ip3)
		}
		for _, port := range []string{"g2", "g3", "g4"} {
			newHelper("kvmnet-natdown", port)
		}
		h.Settle()
	})

	t.Run("lost record", func(t *testing.T) {
		newHelper("kvmnet-natup", "g1")
		// /run/kvmnet lost under a running network: its daemon and files go.
		if _, e, err := h.Run("sh", "-c", `kill $(cat "$0"/default.netsvc.pid) && rm -rf "$0"/default.* "$0"/forwarding.*`, h.State); err != nil {
			t.Fatalf("lose the record: %v\n%s", err, e)
		}
		out, code := doctor()
		want := "problem: network default: kvmnet's own bridge br0 with its gateway 192.168.100.1/24 is left with no record"
		if code != 1 || !strings.Contains(out, want) || strings.Contains(out, "overlaps") {
			t.Errorf("doctor with the record lost: exit %d, want %q and no overlap:\n%s", code, want, out)
		}
		// down --all (a package's prerm) takes them too.
		if _, e, code := h.kvmnet(nil, "down", "--all"); code != 0 {
			t.Errorf("down --all: exit %d\n%s", code, e)
		}
		if tables := h.MustRun("nft", "list", "tables"); strings.Contains(tables, "inet kvmnet") {
			t.Errorf("inet kvmnet is still there after down --all:\n%s", tables)
		}
		h.MustRun("ip", "link", "del", "br0")
		if out, code := doctor(); code != 0 || !strings.HasPrefix(out, "healthy") {
			t.Errorf("doctor after gc and ip link del br0: exit %d\n%s", code, out)
		}
	})
	if got := h.IptablesSave(); strings.Contains(got, "kvmnet") {
		t.Errorf("kvmnet's iptables rules left:\n%s", got)
	}
}
