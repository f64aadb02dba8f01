package warm

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// up is a warm VM's up: the checks the engine's warm up makes (lifecycle's
// upFor with an up-to-date record: the bridge, its addresses, forwarding,
// the daemon, the rules' generation, then findTap's), then its tap steps:
// record the port, attach it. It changes nothing before every check passed.
func (r *run) up() (changes string, err error) {
	if err := r.bridge(); err != nil {
		return "", err
	}
	if err := r.whole(); err != nil {
		return "", err
	}
	tap, err := r.nl.getLink(r.tap)
	if err != nil {
		return "", err
	}
	// findTap's refusals are the engine's to say.
	switch {
	case tap.kind == "bridge" || r.tap == r.hot.Bridge,
		!r.hot.AnyPorts && tap.kind != "tun",
		tap.master != 0 && tap.master != r.br.index:
		return "", errCold
	}
	// A port someone else attached may be outside the guard's group;
	// whether it is isolated is the engine's to read.
	if tap.master == r.br.index && (r.hot.Isolate || tap.group != r.hot.Group) {
		return "", errCold
	}
	if err := r.recordPort(); err != nil {
		return "", err
	}
	if tap.master == r.br.index && tap.up() {
		return "", nil
	}
	if err := r.attach(tap); err != nil {
		return "", err
	}
	return "attach " + r.tap + " to " + r.hot.Bridge, nil
}

// attach makes tap a port of the bridge as bridge.AttachPort does: its port
// MAC (which never becomes the bridge's), the bridge's MTU (one MTU for
// every guest), the guard's device group, the bridge as master and up, in
// one request, which the kernel applies in that order but for up, which it
// applies before the master (no guest runs yet: QEMU starts it once the
// script returns). On a network that isolates its guests the port is made
// isolated before it comes up, so that takes three requests. A port the
// bridge refuses gets its MTU, MAC, device group and down back.
//
//	ip link set TAP address fe:… mtu $(BRIDGE's mtu) group G master BRIDGE up
//	(isolate_guests: … master BRIDGE; bridge link set dev TAP isolated on; ip link set TAP up)
func (r *run) attach(tap link) error {
	set := linkSet{index: tap.index, mac: tap.portMAC(), master: -1, group: -1}
	if tap.mtu != r.br.mtu {
		set.mtu = r.br.mtu
	}
	if tap.master == r.br.index && set.mtu == 0 {
		// On the bridge, in the guard's group, and down (up checked all three).
		set.up = 1
		return r.nl.setLink(set)
	}
	set.master = r.br.index
	if r.hot.Group != 0 {
		set.group = int64(r.hot.Group)
	}
	if !tap.up() && !r.hot.Isolate {
		set.up = 1
	}
	if err := r.nl.setLink(set); err != nil {
		if undo, ok := set.undo(tap); ok {
			_ = r.nl.setLink(undo)
		}
		return err
	}
	if !r.hot.Isolate {
		return nil
	}
	if err := r.nl.setIsolated(tap.index); err != nil {
		return err
	}
	if tap.up() {
		return nil
	}
	return r.nl.setLink(linkSet{index: tap.index, master: -1, group: -1, up: 1})
}

// undo is what puts tap back as it was after set, which attached it, failed
// part-way: the kernel applies a request's changes one by one, and sets the
// MAC, the MTU, the group and up before it tries the master. A port set
// into the guard's group goes to group 0, as the down leaves one; ok
// reports there is something to undo.
func (set linkSet) undo(tap link) (undo linkSet, ok bool) {
	undo = linkSet{index: tap.index, master: -1, group: -1}
	if set.mac != nil {
		undo.mac = tap.mac[:]
	}
	if set.mtu != 0 {
		undo.mtu = tap.mtu
	}
	if set.group >= 0 && tap.master != set.master {
		undo.group = 0
	}
	if set.up > 0 {
		undo.up = -1
	}
	return undo, undo.mac != nil || undo.mtu != 0 || undo.group >= 0 || undo.up != 0
}

// down is a VM's down that is not the network's last: a recorded tap on the
// bridge, and the network pinned or another recorded port still on it. It
// detaches the tap and forgets it, as the engine's down does.
func (r *run) down() (changes string, err error) {
	if err := r.bridge(); err != nil {
		return "", err
	}
	if !r.hasPort() {
		return "", errCold
	}
	tap, err := r.nl.getLink(r.tap)
	if err != nil || tap.master != r.br.index {
		return "", errCold
	}
	if !r.hot.Pinned {
		if live, err := r.anotherPortLive(); err != nil || !live {
			return "", errCold
		}
	}
	// ip link set TAP nomaster
	group := int64(-1)
	if r.hot.Group != 0 {
		group = 0 // out of the guard's group: the tap may go on to another bridge
	}
	if err := r.nl.setLink(linkSet{index: tap.index, master: 0, group: group}); err != nil && !errors.Is(err, unix.ENODEV) {
		return "", err
	}
	if err := unix.Unlink(r.portsDir() + "/" + r.tap); err != nil && !errors.Is(err, unix.ENOENT) {
		return "", err
	}
	return "detach " + r.tap + " from " + r.hot.Bridge, nil
}

// bridge finds the network's bridge: the one the hot file names, by its
// index, and up. Three ioctls, which read the link under RCU, where
// RTM_GETLINK waits for the RTNL lock, which the kernel's work for the taps
// that came and went before holds (measured here: 6 µs against 110). The
// index the engine recorded proves the link is its bridge, as the kernel
// gives a new link a new index; its MTU is the ports'.
//
//	ip link show BRIDGE
func (r *run) bridge() error {
	ifr, err := unix.NewIfreq(r.hot.Bridge)
	if err != nil {
		return errCold
	}
	if err := unix.IoctlIfreq(r.nl.fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return errCold
	}
	index := int(ifr.Uint32())
	if err := unix.IoctlIfreq(r.nl.fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return errCold
	}
	flags := uint32(ifr.Uint16())
	if err := unix.IoctlIfreq(r.nl.fd, unix.SIOCGIFMTU, ifr); err != nil {
		return errCold
	}
	if index != r.hot.Index || flags&unix.IFF_UP == 0 {
		return errCold
	}
	r.br = link{index: index, flags: flags, mtu: ifr.Uint32(), kind: "bridge"}
	return nil
}

// whole checks the rest of what the engine's warm up checks: the bridge's
// addresses, the sysctls (ip_forward), the DHCP/DNS daemon alive, and the
// rules unchanged since they were last seen whole.
func (r *run) whole() error {
	if len(r.hot.Addresses) > 0 {
		r.nl.strictDumps()
	}
	for _, a := range r.hot.Addresses {
		if has, err := r.nl.hasAddress(r.br.index, a.IP, a.Bits); err != nil || !has {
			return errCold
		}
	}
	for _, s := range r.hot.Sysctls {
		b, err := readSmall(s.Path, 64, r.buf)
		if err != nil || strings.TrimSpace(string(b)) != s.Value {
			return errCold
		}
	}
	if r.hot.DaemonPID != 0 && !daemonAlive(r.hot.DaemonPID, r.hot.DaemonConf, r.buf) {
		return errCold
	}
	if r.hot.WatcherPID != 0 && !watcherAlive(r.hot.WatcherPID, r.hot.Network, r.buf) {
		return errCold
	}
	if r.hot.HasRules {
		if legacyFilter(r.buf) {
			return errCold
		}
		gen, err := nftGeneration(r.buf)
		if err != nil || (gen != r.hot.NFTGen && gen != r.followedGen()) {
			return errCold
		}
	}
	return nil
}

// followedGen reads the network's generation file: the generation the
// daemon or the rule watcher moved the hot file's nftgen to, past their
// own guard transactions (a lease, ports forgotten); 0 when there is none.
func (r *run) followedGen() uint32 {
	b, err := readSmall(r.dir+"/"+r.hot.Network+GenExt, 16, r.buf)
	if err != nil || len(b) < 2 || b[len(b)-1] != '\n' {
		return 0
	}
	g, err := strconv.ParseUint(string(b[:len(b)-1]), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(g)
}

// watcherAlive reports whether pid is network's rule watcher, as
// ctl.StartWatcher started it: its argv begins ctl.ProcName, ctl.WatchFlag,
// NETWORK.
func watcherAlive(pid int, network string, buf []byte) bool {
	cmd, err := readSmall("/proc/"+strconv.Itoa(pid)+"/cmdline", 4096, buf)
	return err == nil && strings.HasPrefix(string(cmd), daemonName+"\x00"+watchFlag+"\x00"+network+"\x00")
}

// daemonAlive reports whether pid is the DHCP/DNS daemon started with conf
// (ctl.Alive, which also holds a zombie, whose command line is empty, dead).
func daemonAlive(pid int, conf string, buf []byte) bool {
	cmd, err := readSmall("/proc/"+strconv.Itoa(pid)+"/cmdline", 4096, buf)
	return err == nil && string(cmd) == daemonName+"\x00"+conf+"\x00"
}

// daemonName is the daemon's argv[0] (ctl.ProcName), watchFlag the rule
// watcher's argv[1] (ctl.WatchFlag).
const (
	daemonName = "kvmnet-netsvc"
	watchFlag  = "--watch"
)

// legacyFilter reports whether legacy iptables has a filter table in this
// namespace, whose changes do not move nf_tables' generation (the nftables
// backend's Unchanged is then false).
//
//	cat /proc/thread-self/net/ip_tables_names
func legacyFilter(buf []byte) bool {
	b, err := readSmall("/proc/thread-self/net/ip_tables_names", 4096, buf)
	if err != nil {
		return false
	}
	for _, t := range bytes.Fields(b) {
		if string(t) == "filter" {
			return true
		}
	}
	return false
}
