package libvirt

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kvmnet/kvmnet/internal/portguard"
)

// hotplugged: a NIC hot-plugged into a running domain (`virsh attach-device
// --live`) runs no hook: libvirt calls its qemu hook to prepare, start,
// stop, release, migrate, restore and reconnect a domain (and to attach to
// a QEMU it did not start), never for a device. The network's daemon, which
// follows the bridge's links, puts the new tap into the guard's group and
// isolates it (isolate_guests), as the hook did the domain's first tap.
func hotplugged(l *lab) {
	t := l.t
	conf := "[network.hot]\nbridge = \"kvhot0\"\naddress = \"10.79.0.1/24\"\nisolate_guests = true\n"
	l.inLibvirt("sh", "-c", "printf '%s' \"$1\" >>/etc/kvmnet/kvmnet.toml", "-", conf)
	if err := appendFile(filepath.Join(l.dir, "kvmnet.toml"), conf); err != nil {
		t.Fatal(err)
	}
	l.start(guest{name: "p1", iface: bridgeIface("kvhot0"), acpi: true})
	ports := func() []string {
		var names []string
		for _, f := range strings.Split(strings.TrimSpace(l.host.MustRun("ip", "-br", "link", "show", "master", "kvhot0")), "\n") {
			if name, _, _ := strings.Cut(strings.Fields(f+" -")[0], "@"); name != "" && name != "-" {
				names = append(names, name)
			}
		}
		return names
	}
	before := ports()
	nic := filepath.Join(l.dir, "nic.xml")
	if err := os.WriteFile(nic, []byte(bridgeIface("kvhot0")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := l.virsh("attach-device", "p1", nic, "--live"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var tap string
	for _, p := range ports() {
		if !slices.Contains(before, p) {
			tap = p
		}
	}
	if tap == "" {
		t.Fatalf("no new port on kvhot0 after attach-device (had %q, have %q)", before, ports())
	}
	want := fmt.Sprint(int32(portguard.Group("hot")))
	var g string
	var iso bool
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if g, iso, _ = portOf(l.host, tap); g == want && iso {
			break
		}
	}
	if g != want || !iso {
		t.Errorf("the hot-plugged NIC's %s: group %s, isolated %v; want group %s, isolated\n%s",
			tap, g, iso, want, l.host.MustRun("ip", "-d", "link", "show", tap))
	}
	l.destroy("p1")
	l.restored()
}
