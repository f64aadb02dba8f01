package portguard

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// Keep the main goroutine on the main thread: testns.NS.Do locks a
// goroutine into a namespace.
func init() { runtime.LockOSThread() }

// TestLeaseForgetPorts: in a namespace with the guard table's sets (as the
// rule engine makes them), Lease adds a timed pair, Ports reads what the
// packet path learned, and Forget deletes the gone ports' elements only, in
// every set, and then nothing more; a network without a table is no error.
func TestLeaseForgetPorts(t *testing.T) {
	ns := testns.New(t)
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	gone, live := mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02")
	err := ns.Do(func() error {
		if _, err := Forget("none", func(int) bool { return false }); err != nil {
			return err
		}
		if committed, err := Lease("none", live, netip.MustParseAddr("10.0.0.9"), time.Minute); err != nil || committed {
			return fmt.Errorf("lease on a network with no guard table: committed %v, err %w, want nothing committed", committed, err)
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.AddTable(Table("lab"))
		sets := map[string]*nftables.Set{}
		for _, s := range Sets("lab", true) {
			if err := c.AddSet(s, nil); err != nil {
				return err
			}
			sets[s.Name] = s
		}
		add := func(set string, key []byte) {
			_ = c.SetAddElements(sets[set], []nftables.SetElement{{Key: key}})
		}
		for i, m := range map[int]net.HardwareAddr{7: gone, 8: live} {
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
			a := ip.As4()
			add(PortMAC, append(IfindexKey(i), MACKey(m)...))
			add(MACs, m)
			add(MACPorts, IfindexKey(i))
			add(PortIP, append(IfindexKey(i), a[:]...))
			add(IPs, a[:])
			add(IPPorts, IfindexKey(i))
		}
		if err := c.Flush(); err != nil {
			return err
		}
		if committed, err := Lease("lab", live, netip.MustParseAddr("10.0.0.8"), time.Hour); err != nil || !committed {
			return fmt.Errorf("lease: committed %v, err %w, want committed", committed, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ps map[int]*Port
	if err := ns.Do(func() (err error) { ps, err = Ports("lab"); return err }); err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[7].MAC.String() != gone.String() || ps[8].IP != netip.MustParseAddr("10.0.0.8") {
		t.Fatalf("Ports: %+v %+v", ps[7], ps[8])
	}
	alive := func(i int) bool { return i == 8 }
	for round, want := range []int{1, 0} {
		var n int
		if err := ns.Do(func() (err error) { n, err = Forget("lab", alive); return err }); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("Forget round %d: forgot %d ports, want %d", round, n, want)
		}
	}
	got := ns.MustRun("nft", "list", "table", "bridge", "kvmnet-lab")
	for _, s := range []string{gone.String(), "10.0.0.7"} {
		if strings.Contains(got, s) {
			t.Errorf("the gone port's %s is still in the table:\n%s", s, got)
		}
	}
	for _, s := range []string{live.String(), "10.0.0.8", live.String() + " . 10.0.0.8 timeout 1h"} {
		if !strings.Contains(got, s) {
			t.Errorf("the table lost %q:\n%s", s, got)
		}
	}
}

// TestRecordHost6: RecordHost6 adds the host's addresses the host6 set
// lacks, in one transaction, and then commits nothing; a network without a
// guard table, or one whose table has no host6 set (an isolated network's),
// is no error and commits nothing.
func TestRecordHost6(t *testing.T) {
	ns := testns.New(t)
	gw, ll := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fe80::1")
	err := ns.Do(func() error {
		if committed, err := RecordHost6("none", []netip.Addr{gw}); err != nil || committed {
			return fmt.Errorf("no table: committed %v, err %w", committed, err)
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.AddTable(Table("iso"))
		for _, s := range Sets("iso", false) {
			if err := c.AddSet(s, nil); err != nil {
				return err
			}
		}
		c.AddTable(Table("lab"))
		for _, s := range Sets("lab", true) {
			if err := c.AddSet(s, nil); err != nil {
				return err
			}
		}
		if err := c.Flush(); err != nil {
			return err
		}
		if committed, err := RecordHost6("iso", []netip.Addr{gw}); err != nil || committed {
			return fmt.Errorf("no host6 set: committed %v, err %w", committed, err)
		}
		for round, want := range []bool{true, false} {
			if committed, err := RecordHost6("lab", []netip.Addr{gw, ll, netip.MustParseAddr("10.0.0.1")}); err != nil || committed != want {
				return fmt.Errorf("round %d: committed %v, err %w, want committed %v", round, committed, err, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.MustRun("nft", "list", "set", "bridge", "kvmnet-lab", "host6"); !strings.Contains(got, "fd00::1") || !strings.Contains(got, "fe80::1") {
		t.Errorf("host6 after RecordHost6:\n%s", got)
	}
}
