package bridge

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestMACSel: the keys are those tc packs for `match ether dst|src MAC`
// (tc -s filter show prints them back as such).
func TestMACSel(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:00:55:21")
	for _, tc := range []struct {
		off  int32
		want []netlink.TcU32Key
	}{
		{etherDst, []netlink.TcU32Key{{Off: -16, Mask: 0x0000ffff, Val: 0x00005254}, {Off: -12, Mask: 0xffffffff, Val: 0x00005521}}},
		{etherSrc, []netlink.TcU32Key{{Off: -8, Mask: 0xffffffff, Val: 0x52540000}, {Off: -4, Mask: 0xffff0000, Val: 0x55210000}}},
	} {
		got := macSel(mac, tc.off).Keys
		if len(got) != len(tc.want) {
			t.Fatalf("at %d: %+v, want %+v", tc.off, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("at %d: key %d %+v, want %+v", tc.off, i, got[i], tc.want[i])
			}
		}
	}
}

// TestSelMAC: selMAC reads back what macSel packs, both ways.
func TestSelMAC(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	for _, off := range []int32{etherDst, etherSrc} {
		if got := selMAC(macSel(mac, off), off); got.String() != mac.String() {
			t.Errorf("at %d: %s, want %s", off, got, mac)
		}
	}
}
