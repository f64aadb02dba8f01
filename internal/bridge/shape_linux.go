package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A port's bandwidth is shaped with HTB, one tree per direction: to the
// guest on the port's own egress, from the guest on the egress of an ifb the
// port's ingress redirects to (this kernel has no act_police or matchall to
// police ingress in place; ifb + u32 + act_mirred is CNI's bandwidth plugin's
// way too). Class 1:1 holds the network's rate and is the default; each
// static host that overrides a direction has a class of its own, picked by a
// u32 filter on the guest's MAC (destination to the guest, source from it),
// so the port needs no telling which guest it serves: the guest's frames say.
// A direction nothing limits gets no qdisc at all.

// Rates are a port's limits in bits per second: In to the guest, Out from it; 0 is none.
type Rates struct{ In, Out uint64 }

// HostRates are a static host's own limits, over the network's direction by direction.
type HostRates struct {
	MAC net.HardwareAddr
	Rates
}

// Shaping is all a port of a network is shaped by.
type Shaping struct {
	Rates
	Hosts []HostRates
}

// Empty reports whether s limits nothing.
func (s Shaping) Empty() bool {
	if s.In != 0 || s.Out != 0 {
		return false
	}
	for _, h := range s.Hosts {
		if h.In != 0 || h.Out != 0 {
			return false
		}
	}
	return true
}

// ifbPrefix names the ifb of a port: "kvifb" and the port's ifindex, which
// the kernel does not hand out again while the namespace lives, so an ifb
// whose port is gone is found by name alone (SweepShapers).
const ifbPrefix = "kvifb"

// IfbName is the name of the ifb that port index's traffic from the guest is shaped on.
func IfbName(index int) string { return ifbPrefix + strconv.Itoa(index) }

// MAC offsets as u32 counts them, from the network header: what `tc filter
// ... match ether dst|src` uses.
const (
	etherDst = -14
	etherSrc = -8
)

// Shape puts s on port, replacing what Shape put there before.
//
//	tc qdisc replace dev PORT root handle 1: htb default 1
//	tc class add dev PORT parent 1: classid 1:1 htb rate IN
//	tc filter add dev PORT parent 1: protocol all u32 match ether dst MAC flowid 1:10
//	ip link add kvifbINDEX type ifb; tc qdisc add dev PORT ingress
//	tc filter add dev PORT parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev kvifbINDEX
//	tc qdisc replace dev kvifbINDEX root handle 1: htb default 1 (and its classes, filters on ether src)
func Shape(port netlink.Link, s Shaping) error {
	if err := Unshape(port); err != nil {
		return err
	}
	idx := port.Attrs().Index
	in, out := tree(s, func(r Rates) uint64 { return r.In }), tree(s, func(r Rates) uint64 { return r.Out })
	if in != nil {
		if err := in.install(idx, etherDst); err != nil {
			return fmt.Errorf("limit traffic to %s: %w", port.Attrs().Name, err)
		}
	}
	if out == nil {
		return nil
	}
	if err := redirect(port); err != nil {
		return fmt.Errorf("limit traffic from %s: %w", port.Attrs().Name, err)
	}
	ifb, err := Link(IfbName(idx))
	if err != nil {
		return err
	}
	if err := out.install(ifb.Attrs().Index, etherSrc); err != nil {
		return fmt.Errorf("limit traffic from %s: %w", port.Attrs().Name, err)
	}
	return nil
}

// htbTree is one direction's classes: the default rate (0: none) and the
// hosts' own.
type htbTree struct {
	rate  uint64
	hosts []HostRates // Rates.In holds this direction's rate
}

// tree is s's tree for the direction pick reads, nil when nothing limits it.
func tree(s Shaping, pick func(Rates) uint64) *htbTree {
	t := &htbTree{rate: pick(s.Rates)}
	for _, h := range s.Hosts {
		if r := pick(h.Rates); r != 0 {
			t.hosts = append(t.hosts, HostRates{MAC: h.MAC, Rates: Rates{In: r}})
		}
	}
	if t.rate == 0 && len(t.hosts) == 0 {
		return nil
	}
	return t
}

// install makes t the root qdisc of link index, the hosts' filters matching
// the MAC at offset mac (etherDst or etherSrc).
func (t *htbTree) install(index int, mac int32) error {
	root := netlink.MakeHandle(1, 0)
	q := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: index, Handle: root, Parent: netlink.HANDLE_ROOT})
	if t.rate != 0 {
		q.Defcls = 1 // else unclassified traffic goes unshaped (HTB's direct queue)
	}
	// Replace, not add: libvirt (6.0 on) gives its taps a root qdisc of
	// their own, noqueue, which an add finds in place (EEXIST).
	if err := nlh.QdiscReplace(q); err != nil {
		return fmt.Errorf("add htb qdisc: %w", err)
	}
	if t.rate != 0 {
		if err := addClass(index, 1, t.rate); err != nil {
			return err
		}
	}
	for i, h := range t.hosts {
		minor := uint16(0x10 + i)
		if err := addClass(index, minor, h.In); err != nil {
			return err
		}
		f := &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: root, Priority: 1, Protocol: unix.ETH_P_ALL},
			ClassId:     netlink.MakeHandle(1, minor),
			Sel:         macSel(h.MAC, mac),
		}
		if err := nlh.FilterAdd(f); err != nil {
			return fmt.Errorf("add u32 filter for %s: %w", h.MAC, err)
		}
	}
	return nil
}

// addClass adds HTB class 1:minor at rate bits per second, borrowing nothing.
func addClass(index int, minor uint16, rate uint64) error {
	c := netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: index, Parent: netlink.MakeHandle(1, 0), Handle: netlink.MakeHandle(1, minor)},
		netlink.HtbClassAttrs{Rate: rate, Ceil: rate})
	if err := nlh.ClassAdd(c); err != nil {
		return fmt.Errorf("add htb class 1:%x: %w", minor, err)
	}
	return nil
}

// macSel matches the six bytes of mac at offset off, in the aligned 32-bit
// words u32 compares (as tc's `match ether` packs them).
func macSel(mac net.HardwareAddr, off int32) *netlink.TcU32Sel {
	sel := &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL}
	for i, b := range mac {
		o := off + int32(i)
		word := o &^ 3 // rounds down for negative offsets too
		shift := uint(3-(o-word)) * 8
		if n := len(sel.Keys); n == 0 || sel.Keys[n-1].Off != word {
			sel.Keys = append(sel.Keys, netlink.TcU32Key{Off: word})
		}
		k := &sel.Keys[len(sel.Keys)-1]
		k.Val |= uint32(b) << shift
		k.Mask |= 0xff << shift
	}
	return sel
}

// redirect makes port's ifb and sends everything arriving on port through it.
func redirect(port netlink.Link) error {
	name := IfbName(port.Attrs().Index)
	ifb := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: 1000}}
	if err := nlh.LinkAdd(ifb); err != nil {
		return fmt.Errorf("add ifb %s: %w", name, err)
	}
	l, err := Link(name)
	if err != nil {
		return err
	}
	if err := nlh.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: port.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := nlh.QdiscAdd(ingress); err != nil {
		return fmt.Errorf("add ingress qdisc: %w", err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: port.Attrs().Index, Parent: netlink.MakeHandle(0xffff, 0), Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions:     []netlink.Action{netlink.NewMirredAction(l.Attrs().Index)},
	}
	if err := nlh.FilterAdd(f); err != nil {
		return fmt.Errorf("add u32 filter redirecting to %s: %w", name, err)
	}
	return nil
}

// Unshape takes Shape's work off port: its root and ingress qdiscs, if they
// are Shape's kinds, and its ifb. A port already gone took its qdiscs along.
//
//	tc qdisc del dev PORT root; tc qdisc del dev PORT ingress; ip link del kvifbINDEX
func Unshape(port netlink.Link) error {
	qs, err := nlh.QdiscList(port)
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("list qdiscs of %s: %w", port.Attrs().Name, err)
	}
	for _, q := range qs {
		a := q.Attrs()
		ours := (q.Type() == "htb" && a.Parent == netlink.HANDLE_ROOT && a.Handle == netlink.MakeHandle(1, 0)) || q.Type() == "ingress"
		if !ours {
			continue
		}
		if err := nlh.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete %s qdisc of %s: %w", q.Type(), port.Attrs().Name, err)
		}
	}
	return deleteIfb(IfbName(port.Attrs().Index))
}

func deleteIfb(name string) error {
	l, err := Link(name)
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Type() != "ifb" {
		return nil // not ours: kvmnet names its own kvifbN and makes them ifb
	}
	if err := nlh.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// SweepShapers deletes the ifbs whose port is gone: a VM killed, or a port
// deleted without a down, leaves its ifb behind (a port's qdiscs go with it).
func SweepShapers() ([]string, error) {
	links, err := linkList()
	if err != nil {
		return nil, err
	}
	have := map[int]bool{}
	for _, l := range links {
		have[l.Attrs().Index] = true
	}
	var gone []string
	var errs []error
	for _, l := range links {
		n, ok := strings.CutPrefix(l.Attrs().Name, ifbPrefix)
		idx, err := strconv.Atoi(n)
		if !ok || err != nil || l.Type() != "ifb" || have[idx] {
			continue
		}
		if err := nlh.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			continue
		}
		gone = append(gone, l.Attrs().Name)
	}
	return gone, errors.Join(errs...)
}

// linkList is `ip link show`, asked again when a change of links (another
// network's teardown) interrupted the kernel's dump.
func linkList() ([]netlink.Link, error) {
	for try := 0; ; try++ {
		links, err := nlh.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) && try < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		return links, nil
	}
}

// ReadShaping reads back what Shape put on port, from the kernel: the
// default classes' rates and each host class's rate with the MAC its filter
// matches. A port Shape never touched reads as the empty Shaping.
//
//	tc class show dev PORT; tc filter show dev PORT; the same on kvifbINDEX
func ReadShaping(port netlink.Link) (Shaping, error) {
	var s Shaping
	hosts := map[string]int{} // MAC to index in s.Hosts
	host := func(mac net.HardwareAddr) *HostRates {
		i, ok := hosts[mac.String()]
		if !ok {
			i = len(s.Hosts)
			s.Hosts = append(s.Hosts, HostRates{MAC: mac})
			hosts[mac.String()] = i
		}
		return &s.Hosts[i]
	}
	in, err := readTree(port.Attrs().Index, etherDst)
	if err != nil {
		return s, fmt.Errorf("read traffic control of %s: %w", port.Attrs().Name, err)
	}
	out := map[string]uint64{}
	if ifb, err := Link(IfbName(port.Attrs().Index)); err == nil && ifb.Type() == "ifb" {
		if out, err = readTree(ifb.Attrs().Index, etherSrc); err != nil {
			return s, fmt.Errorf("read traffic control of %s: %w", ifb.Attrs().Name, err)
		}
	}
	s.In, s.Out = in[""], out[""]
	for _, tree := range []struct {
		rates map[string]uint64
		set   func(*HostRates, uint64)
	}{{in, func(h *HostRates, r uint64) { h.In = r }}, {out, func(h *HostRates, r uint64) { h.Out = r }}} {
		for mac, r := range tree.rates {
			if hw, err := net.ParseMAC(mac); err == nil {
				tree.set(host(hw), r)
			}
		}
	}
	// In a stable order: the maps gave them in any.
	slices.SortFunc(s.Hosts, func(a, b HostRates) int { return bytes.Compare(a.MAC, b.MAC) })
	return s, nil
}

// readTree maps "" to the rate of class 1:1 of link index and each MAC a
// filter sends to another class to that class's rate, in bits per second.
func readTree(index int, mac int32) (map[string]uint64, error) {
	rates := map[string]uint64{}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
	classes, err := nlh.ClassList(link, netlink.MakeHandle(1, 0))
	if err != nil {
		return nil, err
	}
	byID := map[uint32]uint64{}
	for _, c := range classes {
		if h, ok := c.(*netlink.HtbClass); ok {
			byID[h.Handle] = h.Rate * 8
		}
	}
	if r, ok := byID[netlink.MakeHandle(1, 1)]; ok {
		rates[""] = r
	}
	if len(byID) == 0 {
		return rates, nil
	}
	filters, err := nlh.FilterList(link, netlink.MakeHandle(1, 0))
	if err != nil {
		return nil, err
	}
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok || u.Sel == nil {
			continue
		}
		if r, ok := byID[u.ClassId]; ok {
			rates[selMAC(u.Sel, mac).String()] = r
		}
	}
	return rates, nil
}

// selMAC is macSel's inverse: the six bytes the keys match at offset off.
func selMAC(sel *netlink.TcU32Sel, off int32) net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	for _, k := range sel.Keys {
		for j := int32(0); j < 4; j++ {
			shift := uint(3-j) * 8
			if i := k.Off + j - off; i >= 0 && i < 6 && (k.Mask>>shift)&0xff == 0xff {
				mac[i] = byte(k.Val >> shift)
			}
		}
	}
	return mac
}
