package netsvc

import (
	"bytes"
	"encoding/binary"
	"hash/fnv"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// x_tables (iptables-legacy) sends no notification of a change, and has no
// generation to compare. What the kernel does give is each table's whole
// blob, by the getsockopt calls iptables-legacy-save makes: the watcher reads
// them every legacyInterval and hashes them without their packet and byte
// counters (which traffic moves). A few kilobytes a table, some 20 µs here;
// only when the namespace has legacy tables at all.

// x_tables' getsockopt names (IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES; ip6t's are equal).
const (
	soGetInfo    = 64
	soGetEntries = 65
)

// xtFamily is one of x_tables' families as the digest reads it.
type xtFamily struct {
	names       string // /proc/net's list of the family's tables
	domain      int    // the raw socket's family
	level       int    // getsockopt's level
	counterOff  int    // where an entry's xt_counters begin: offsetof(ipt_entry, counters)
	nextOffsetO int    // offsetof(ipt_entry, next_offset)
}

var xtFamilies = []xtFamily{
	{"ip_tables_names", unix.AF_INET, unix.IPPROTO_IP, 96, 90},
	{"ip6_tables_names", unix.AF_INET6, unix.IPPROTO_IPV6, 152, 142},
}

// legacyDigest hashes every legacy table of the thread's network namespace,
// counters left out: `iptables-legacy-save; ip6tables-legacy-save`. It is 0
// when there are none, or none could be read.
func legacyDigest() uint64 {
	h := fnv.New64a()
	for _, f := range xtFamilies {
		names, err := os.ReadFile("/proc/thread-self/net/" + f.names)
		if err != nil || len(names) == 0 {
			continue
		}
		fd, err := unix.Socket(f.domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			continue
		}
		for _, name := range bytes.Fields(names) {
			h.Write(name)
			h.Write(f.table(fd, string(name)))
		}
		unix.Close(fd)
	}
	if h.Sum64() == fnv.New64a().Sum64() {
		return 0
	}
	return h.Sum64()
}

// table returns table name's info and entries, counters zeroed; nil when
// unreadable.
func (f xtFamily) table(fd int, name string) []byte {
	// struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size.
	info := make([]byte, 84)
	copy(info, name)
	if getsockopt(fd, f.level, soGetInfo, info) != nil {
		return nil
	}
	size := binary.NativeEndian.Uint32(info[80:])
	// struct ipt_get_entries: name[32], size, padding to 8, the entries.
	get := make([]byte, 40+int(size))
	copy(get, name)
	binary.NativeEndian.PutUint32(get[32:], size)
	if getsockopt(fd, f.level, soGetEntries, get) != nil {
		return nil // changed between the two calls: the next read sees it
	}
	entries := get[40:]
	for off := 0; off+f.counterOff+16 <= len(entries); {
		clear(entries[off+f.counterOff : off+f.counterOff+16])
		next := int(binary.NativeEndian.Uint16(entries[off+f.nextOffsetO:]))
		if next == 0 {
			break
		}
		off += next
	}
	return append(info[32:], entries...)
}

// getsockopt is getsockopt(2) with a buffer that the kernel reads and writes.
func getsockopt(fd, level, opt int, buf []byte) error {
	n := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return e
	}
	return nil
}
