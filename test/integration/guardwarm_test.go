package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// Where the guard meets the warm path (docs/guard.md, docs/speed.md): a
// guarded network's ups stay warm while VMs come and go, and what the guard
// learned of a VM's port is forgotten when it goes though no engine runs.

// upRan runs up script prog on tap, and reports whether the front handed
// it to the engine, which writes a new hot file.
func (h *host) upRan(prog, tap string) (engine bool) {
	h.T.Helper()
	hot, hold := h.hotInode()
	if hold != nil {
		defer hold.Close()
	}
	h.mustHelper(prog, tap)
	return hot == 0 || h.hotIno() != hot
}

// waitForgotten waits until the default network's guard no longer holds
// mac: the daemon or the rule watcher forgets a port a moment after its
// link is deleted.
func (h *host) waitForgotten(mac string) {
	h.T.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(h.MustRun("nft", "list", "set", "bridge", "kvmnet-default", "macs"), mac) {
		if time.Now().After(deadline) {
			h.T.Fatalf("the guard still holds %s 5 s after its port went\n%s", mac, h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vmGuest is a guest on a new veth tap with addr on its eth0 (none: "") and
// MAC mac (none: the kernel's).
func (h *host) vmGuest(tap, addr, mac string) *testns.NS {
	h.T.Helper()
	g := h.guest(tap, "", "")
	if mac != "" {
		g.MustRun("ip", "link", "set", "eth0", "address", mac)
	}
	if addr != "" {
		g.MustRun("ip", "addr", "add", addr, "dev", "eth0")
	}
	return g
}

// TestWarmIsolatedForgetsGonePorts: an isolated network (guard on, no
// daemon) is warm, and a VM killed (its port deleted, no downscript) and
// started again with its MAC on a warm front's new port reaches its peer:
// the rule watcher forgot the port that went, as the daemon does on a
// network it serves, and its forgetting left the network warm.
func TestWarmIsolatedForgetsGonePorts(t *testing.T) {
	h := newHost(t, "nftables", "[network.default]\nports = \"any\"\n")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	a := h.vmGuest("vnetA", "10.70.0.10/24", "")
	h.vmGuest("vnetB", "10.70.0.11/24", "")
	h.mustHelper("kvmnet-ifup", "vnetA")
	h.warmIf("kvmnet-ifup", "vnetB", "up", "attach vnetB to br0")
	if _, _, err := a.Run("ping", "-c", "1", "-W", "2", "10.70.0.11"); err != nil {
		t.Fatalf("guest a does not reach guest b: %v", err)
	}
	am := macOf(a).String()
	h.MustRun("ip", "link", "del", "vnetA") // killed: no downscript
	h.waitForgotten(am)
	a2 := h.vmGuest("vnetA", "10.70.0.10/24", am)
	h.warmIf("kvmnet-ifup", "vnetA", "up", "attach vnetA to br0")
	if _, _, err := a2.Run("ping", "-c", "1", "-W", "2", "10.70.0.11"); err != nil {
		t.Errorf("a VM started again with its MAC does not reach its peer: %v\n%s", err, h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"))
	}
	h.warmIf("kvmnet-ifdown", "vnetA", "down", "detach vnetA from br0")
	h.mustHelper("kvmnet-ifdown", "vnetB")
	h.MustRun("ip", "link", "del", "vnetA")
	h.MustRun("ip", "link", "del", "vnetB")
	h.assertClean(rules, fwd)
}

// TestWarmAfterLeases: VMs booted one after another on a NAT network, each
// taking a DHCP lease (the daemon tells the guard: an nf_tables
// transaction) and then killed (the daemon forgets its port: another), take
// the engine once, for the first: the daemon moves the network's
// generation file past its own transactions. Another program's transaction
// still sends the next up to the engine, and the engine's up is warm again
// after it.
func TestWarmAfterLeases(t *testing.T) {
	const vms = 5
	bb := busybox(t)
	h := newHost(t, "nftables", "[network.default]\nports = \"any\"\n")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	engine := 0
	boot := func(i int) {
		tap := fmt.Sprintf("vnet%d", i)
		g := h.vmGuest(tap, "", "")
		if h.upRan("kvmnet-natup", tap) {
			engine++
		}
		if _, stderr, err := g.Run(bb, "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-s", "/bin/true"); err != nil {
			t.Fatalf("VM %d takes no lease: %v\n%s\n%s", i, err, stderr, h.DaemonLogs())
		}
		mac := macOf(g).String()
		h.MustRun("ip", "link", "del", tap) // the VM exits: QEMU's tap goes, no downscript
		h.waitForgotten(mac)
	}
	// A VM that stays keeps the network up between the others.
	h.vmGuest("vnetS", "", "")
	h.mustHelper("kvmnet-natup", "vnetS")
	for i := range vms {
		boot(i)
	}
	t.Logf("%d VMs booted one after another, each leased and killed: %d ups by the engine", vms, engine)
	if engine != 0 {
		t.Errorf("%d of %d ups after a VM's lease and exit went to the engine, want none", engine, vms)
	}
	h.MustRun("nft", "add", "table", "inet", "stranger") // another program's transactions
	h.MustRun("nft", "delete", "table", "inet", "stranger")
	if !h.upRan("kvmnet-natup", "vnetS") {
		t.Error("an up after another program's nf_tables transaction did not go to the engine")
	}
	engine = 0
	boot(vms)
	if engine != 0 {
		t.Error("the up after the engine's, and a lease and exit, went to the engine")
	}
	h.mustHelper("kvmnet-natdown", "vnetS")
	h.MustRun("ip", "link", "del", "vnetS")
	h.assertClean(rules, fwd)
}
