package firewall

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
	"github.com/kvmnet/kvmnet/internal/vtepset"
)

// TestVTEPSet: an EVPN network's set is the resident's once made: Sync
// replaces its elements, a later Ensure keeps them (and the generation);
// a removed set is missing to Check, Sync reports ErrNoSet, and Ensure puts
// it back with the up's VTEPs; a network that is no longer EVPN loses it,
// and so does one removed while another keeps the table.
func TestVTEPSet(t *testing.T) {
	ns := testns.New(t)
	n := Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated, Overlay: testEVPN}
	ensure(t, ns, netB) // Remove of iso then deletes its set, not the table
	ensure(t, ns, n)
	list := func() string { return ns.MustRun("nft", "list", "set", "inet", "kvmnet", "vtep-iso") }
	sync := func(vteps ...string) error {
		var as []netip.Addr
		for _, v := range vteps {
			as = append(as, netip.MustParseAddr(v))
		}
		return ns.Do(func() error { return vtepset.Sync("iso", as) })
	}
	if err := sync("198.51.100.7", "2001:db8::7"); err != nil {
		t.Fatal(err)
	}
	if got := list(); !strings.Contains(got, "elements = { 198.51.100.7 }") {
		t.Errorf("after Sync:\n%s", got)
	}
	if r := ensure(t, ns, n); r.Changed {
		t.Error("Ensure rewrote a set the resident keeps")
	}
	if got := list(); !strings.Contains(got, "elements = { 198.51.100.7 }") {
		t.Errorf("after a second Ensure:\n%s", got)
	}
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	if got := list(); strings.Contains(got, "elements") {
		t.Errorf("after an empty Sync:\n%s", got)
	}
	ns.MustRun("nft", "flush", "chain", "inet", "kvmnet", "in-iso")
	ns.MustRun("nft", "delete", "set", "inet", "kvmnet", "vtep-iso")
	if m := check(t, ns, n); len(m) == 0 || !strings.Contains(m[0], "set vtep-iso") {
		t.Errorf("Check without the set: %q", m)
	}
	if err := sync("198.51.100.7"); !errors.Is(err, vtepset.ErrNoSet) {
		t.Errorf("Sync without the set: %v, want ErrNoSet", err)
	}
	ensure(t, ns, n)
	if got := list(); !strings.Contains(got, "elements = { 198.51.100.2, 198.51.100.3 }") {
		t.Errorf("after the heal:\n%s", got)
	}
	static := n
	static.Overlay = testOverlay
	ensure(t, ns, static)
	if got := ns.MustRun("nft", "list", "table", "inet", "kvmnet"); strings.Contains(got, "vtep-iso") {
		t.Errorf("a network without evpn keeps its set:\n%s", got)
	}
	ensure(t, ns, n)
	remove(t, ns, n)
	if got := ns.MustRun("nft", "list", "table", "inet", "kvmnet"); strings.Contains(got, "vtep-iso") {
		t.Errorf("Remove left the set:\n%s", got)
	}
	remove(t, ns, netB)
}
