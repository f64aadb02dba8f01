package bridge

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/testns"
	"github.com/kvmnet/kvmnet/internal/vtepset"
)

// TestEVPNLinkAndVTEPWatch: an EVPN VXLAN link is made as zebra needs it
// (local, nolearning, its port learning off and neigh_suppress on), and
// vtepset.Watch reports its all-zero FDB entries as zebra would add and remove
// them (here `bridge fdb append/del`), ignoring a remote MAC's.
func TestEVPNLinkAndVTEPWatch(t *testing.T) {
	ns := testns.New(t)
	ns.MustRun("ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1")
	ns.MustRun("ip", "addr", "add", "198.51.100.2/24", "dev", "ul0")
	ns.MustRun("ip", "link", "add", "kvlab0", "type", "bridge")
	var vx *netlink.Vxlan
	if err := ns.Do(func() error {
		ul, err := ReadEVPNUnderlay("ul0", netip.Addr{})
		if err != nil {
			return err
		}
		br, err := Find("kvlab0")
		if err != nil {
			return err
		}
		vx, err = CreateVXLAN(VXLAN{Name: "vx-lab", VNI: 4242, Port: 4789, Local: ul.Source, DevIndex: ul.DevIndex, MTU: ul.MTU - VXLANOverhead, EVPN: true}, br)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if d := ns.MustRun("ip", "-d", "link", "show", "vx-lab"); !strings.Contains(d, "vxlan id 4242 local 198.51.100.2 dev ul0 ") || !strings.Contains(d, " nolearning ") || !strings.Contains(d, ",UP") {
		t.Errorf("vx-lab:\n%s", d)
	}
	if d := ns.MustRun("bridge", "-d", "link", "show", "dev", "vx-lab"); !strings.Contains(d, "learning off") || !strings.Contains(d, "neigh_suppress on") {
		t.Errorf("vx-lab's port:\n%s", d)
	}

	seen := make(chan []netip.Addr, 16)
	done := make(chan struct{})
	watching := make(chan error, 1)
	go func() {
		watching <- ns.Do(func() error { return vtepset.Watch(vx, done, func(v []netip.Addr) { seen <- v }) })
	}()
	next := func(want ...string) {
		t.Helper()
		select {
		case got := <-seen:
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if !slices.Equal(s, want) {
				t.Errorf("VTEPs %v, want %v", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no VTEPs reported, want %v", want)
		}
	}
	next()
	ns.MustRun("bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx-lab", "dst", "198.51.100.3")
	next("198.51.100.3")
	ns.MustRun("bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx-lab", "dst", "198.51.100.1")
	next("198.51.100.1", "198.51.100.3")
	ns.MustRun("bridge", "fdb", "add", "52:54:00:77:00:03", "dev", "vx-lab", "dst", "198.51.100.3", "extern_learn")
	ns.MustRun("bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vx-lab", "dst", "198.51.100.3")
	next("198.51.100.1")
	if err := ns.Do(func() error {
		vteps, macs, err := EVPNRemotes(vx)
		if len(vteps) != 1 || len(macs) != 1 || macs[0].MAC.String() != "52:54:00:77:00:03" || macs[0].VTEP.String() != "198.51.100.3" {
			t.Errorf("EVPNRemotes: %v %v", vteps, macs)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	close(done)
	if err := <-watching; err != nil {
		t.Errorf("vtepset.Watch: %v", err)
	}
}
