package netsvc

import (
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// The link watch's rule on the kernel's own events: the network is vacated
// when the last tap on its bridge is deleted, not when a tap is detached (a
// downscript's doing), nor while another tap is on the bridge, nor by a port
// that is not a tap.
func TestLinkWatchVacated(t *testing.T) {
	ns := testns.New(t)
	ns.MustRun("ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v0p")
	ns.MustRun("ip", "link", "set", "v0", "master", "br0")
	for _, tap := range []string{"t0", "t1"} {
		ns.MustRun("ip", "tuntap", "add", tap, "mode", "tap")
		ns.MustRun("ip", "link", "set", tap, "master", "br0")
	}
	s := &Server{cfg: Config{Network: "lab", Bridge: "br0"}, log: testLog(t)}
	updates := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	err := ns.Do(func() error {
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		s.bridgeIndex = br.Attrs().Index
		return netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ListExisting: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	taps := map[int32]bool{}
	vacated := 0
	// until feeds the watch every event up to the first that match accepts.
	until := func(what string, match func(u netlink.LinkUpdate) bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case u := <-updates:
				if s.tapEvent(taps, u) && len(taps) == 0 {
					vacated++
				}
				if match(u) {
					return
				}
			case <-timeout:
				t.Fatalf("no event for %s", what)
			}
		}
	}
	deleted := func(name string) func(u netlink.LinkUpdate) bool {
		return func(u netlink.LinkUpdate) bool {
			return u.Header.Type == unix.RTM_DELLINK && u.Family != unix.AF_BRIDGE && u.Attrs().Name == name
		}
	}
	step := func(what string, want int, match func(u netlink.LinkUpdate) bool, argv ...string) {
		t.Helper()
		ns.MustRun(argv...)
		until(what, match)
		if vacated != want {
			t.Fatalf("after %s: vacated %d times, want %d (taps %v)", what, vacated, want, taps)
		}
	}
	until("the dump", func(u netlink.LinkUpdate) bool { return len(taps) == 2 })
	step("t1 deleted, t0 on the bridge", 0, deleted("t1"), "ip", "link", "del", "t1")
	on := func(name string, master int) func(u netlink.LinkUpdate) bool {
		return func(u netlink.LinkUpdate) bool { return u.Attrs().Name == name && u.Attrs().MasterIndex == master }
	}
	step("t0 detached", 0, on("t0", 0), "ip", "link", "set", "t0", "nomaster")
	step("t0 deleted off the bridge", 0, deleted("t0"), "ip", "link", "del", "t0")
	ns.MustRun("ip", "tuntap", "add", "t2", "mode", "tap")
	step("t2 attached", 0, on("t2", s.bridgeIndex), "ip", "link", "set", "t2", "master", "br0")
	step("v0 deleted (not a tap)", 0, deleted("v0"), "ip", "link", "del", "v0")
	step("t2 deleted on the bridge, the last tap", 1, deleted("t2"), "ip", "link", "del", "t2")
}
