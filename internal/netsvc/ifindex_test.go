package netsvc

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDaemonExitsWhenBridgeRecreated: a bridge deleted and made again under
// the same name between two checks has a new index, which the daemon's
// sockets are not bound to: it exits, as when the bridge is gone.
func TestDaemonExitsWhenBridgeRecreated(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	n.host.MustRun("sh", "-c", "ip link del br0 && ip link add br0 type bridge && ip link set br0 up")
	deadline := time.Now().Add(3 * bridgeWatchInterval)
	for running(n.pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if running(n.pid) {
		t.Fatal("daemon still running on a re-created bridge")
	}
}

// TestIfIndexer: the index of a link, the same on every call (the name
// survives the kernel's answer), and ENODEV for a link that is not there.
func TestIfIndexer(t *testing.T) {
	n := newTestNet(t, testConfig())
	err := n.host.Do(func() error {
		ifc, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		want := ifc.Index
		x, err := newIfIndexer("br0")
		if err != nil {
			return err
		}
		defer x.close()
		for range 3 {
			if got, err := x.index(); err != nil || got != want {
				t.Errorf("index of br0: %d, %v; want %d", got, err, want)
			}
		}
		if allocs := testing.AllocsPerRun(10, func() { _, _ = x.index() }); allocs != 0 {
			t.Errorf("index allocates %v times a call", allocs)
		}
		gone, err := newIfIndexer("nosuchbr0")
		if err != nil {
			return err
		}
		defer gone.close()
		if _, err := gone.index(); !errors.Is(err, unix.ENODEV) {
			t.Errorf("index of a missing link: %v, want ENODEV", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
