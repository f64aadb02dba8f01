package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/portguard"
)

// A NIC hot-plugged into a running libvirt domain runs no hook (docs/guard.md):
// libvirt makes its tap, attaches it to the bridge and sets it up, and QEMU
// writes the guest's frames to it. Here the test is QEMU: it attaches a tap
// by hand and writes frames to it through /dev/net/tun.

// tapWriter opens tap name of h's namespace as QEMU does (IFF_TAP, no packet
// information): what it writes, the bridge receives from the tap. Closed
// when the test ends.
func tapWriter(t *testing.T, h *host, name string) int {
	t.Helper()
	var fd int
	err := h.Do(func() error {
		var err error
		if fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	})
	if err != nil {
		t.Fatalf("open tap %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// waitGroup waits up to 2 s for link name to be in group want (as ip prints it).
func waitGroup(h *host, name, want string) string {
	var g string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if g = h.linkGroup(name); g == want {
			break
		}
	}
	return g
}

// TestGuardHotplugged: a tap that arrives on a guarded bridge without
// kvmnet (as libvirt's for a hot-plugged NIC) is put into the network's
// guard group by the network's daemon, which logs it; then a frame it
// sends from another guest's address reaches no one, while its own does.
// With isolate_guests it is made an isolated port too. Before, it stayed
// outside the group and its spoofed frame reached the neighbour.
func TestGuardHotplugged(t *testing.T) {
	want := fmt.Sprint(int32(portguard.Group("default")))
	t.Run("guard", func(t *testing.T) {
		h, _, b := guardWorld(t, "nftables", "")
		h.MustRun("ip", "tuntap", "add", "vnetH", "mode", "tap")
		tap := tapWriter(t, h, "vnetH")
		h.MustRun("ip", "link", "set", "vnetH", "master", "br0", "up")
		if g := waitGroup(h, "vnetH", want); g != want {
			t.Fatalf("the hot-plugged tap is in group %s, want the guard's %s\n%s", g, want, h.DaemonLogs())
		}
		if logs := h.DaemonLogs(); !strings.Contains(logs, "port=vnetH") || !strings.Contains(logs, "is now guarded") {
			t.Errorf("the daemon does not say it guarded vnetH:\n%s", logs)
		}
		rb, err := openRaw(b)
		if err != nil {
			t.Fatal(err)
		}
		defer rb.close()
		mac := net.HardwareAddr{0xfe, 0x54, 0, 0x12, 0x34, 0x56}
		bcast := netip.MustParseAddr("192.168.100.255")
		own := ether(broadcast, mac, 0x0800, ipv4(netip.MustParseAddr("192.168.100.50"), bcast, 17, udp(9999, 9999, []byte("kvmnet-hotplug-own"))))
		if _, err := unix.Write(tap, own); err != nil {
			t.Fatal(err)
		}
		if !rb.seen([]byte("kvmnet-hotplug-own"), 2*time.Second) {
			t.Fatal("guest b does not see the hot-plugged NIC's own frame: the test cannot see anything")
		}
		spoof := ether(broadcast, mac, 0x0800, ipv4(bAddr, bcast, 17, udp(9999, 9999, []byte("kvmnet-hotplug-spoof"))))
		if _, err := unix.Write(tap, spoof); err != nil {
			t.Fatal(err)
		}
		if rb.seen([]byte("kvmnet-hotplug-spoof"), 700*time.Millisecond) {
			t.Error("guest b received the hot-plugged NIC's frame from its address")
		}
	})
	t.Run("isolated network's watcher", func(t *testing.T) {
		h := newHost(t, "nftables", "[network.default]\nports = \"any\"\n")
		h.vmGuest("vnetA", "10.70.0.10/24", "")
		h.mustHelper("kvmnet-ifup", "vnetA") // no daemon: the rule watcher follows the links
		h.MustRun("ip", "tuntap", "add", "vnetH", "mode", "tap")
		h.MustRun("ip", "link", "set", "vnetH", "master", "br0")
		logs, _ := os.ReadFile(filepath.Join(h.State, "default.watch.log"))
		if g := waitGroup(h, "vnetH", want); g != want {
			t.Fatalf("the hot-plugged tap is in group %s, want the guard's %s\n%s", g, want, logs)
		}
		logs, _ = os.ReadFile(filepath.Join(h.State, "default.watch.log"))
		if !strings.Contains(string(logs), "port=vnetH") {
			t.Errorf("the watcher does not say it guarded vnetH:\n%s", logs)
		}
	})
	// A network whose isolate_guests changes while it is up gets a watcher
	// started again with the new setting: the watcher running was kept
	// while its argument count matched, and guarded the next hot-plugged
	// tap without isolating it.
	t.Run("watcher follows isolate_guests", func(t *testing.T) {
		h := newHost(t, "nftables", "[network.default]\nports = \"any\"\ndhcp = false\ndns = false\n")
		h.MustRun("ip", "tuntap", "add", "vnetA", "mode", "tap")
		h.mustHelper("kvmnet-natup", "vnetA")
		conf, err := os.ReadFile(h.Config)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(h.Config, append(conf, "isolate_guests = true\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		h.MustRun("ip", "tuntap", "add", "vnetB", "mode", "tap")
		h.mustHelper("kvmnet-natup", "vnetB") // the engine's: the network's settings changed
		h.MustRun("ip", "tuntap", "add", "vnetH", "mode", "tap")
		h.MustRun("ip", "link", "set", "vnetH", "master", "br0")
		if g := waitGroup(h, "vnetH", want); g != want {
			logs, _ := os.ReadFile(filepath.Join(h.State, "default.watch.log"))
			t.Fatalf("the hot-plugged tap is in group %s, want the guard's %s\n%s", g, want, logs)
		}
		if out := h.MustRun("bridge", "-d", "link", "show", "dev", "vnetH"); !strings.Contains(out, "isolated on") {
			t.Errorf("the hot-plugged tap is not an isolated port after isolate_guests was turned on:\n%s", out)
		}
	})
	t.Run("isolate_guests", func(t *testing.T) {
		h, _, _ := guardWorld(t, "nftables", "isolate_guests = true\n")
		h.MustRun("ip", "tuntap", "add", "vnetH", "mode", "tap")
		h.MustRun("ip", "link", "set", "vnetH", "master", "br0")
		if g := waitGroup(h, "vnetH", want); g != want {
			t.Fatalf("the hot-plugged tap is in group %s, want the guard's %s\n%s", g, want, h.DaemonLogs())
		}
		if out := h.MustRun("bridge", "-d", "link", "show", "dev", "vnetH"); !strings.Contains(out, "isolated on") {
			t.Errorf("the hot-plugged tap is not an isolated port:\n%s", out)
		}
	})
}
