package netsvc

import (
	"bytes"
	"encoding/binary"
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
	names       string // the /proc file listing the family's tables
	domain      int    // the raw socket's family
	level       int    // getsockopt's level
	counterOff  int    // where an entry's xt_counters begin: offsetof(ipt_entry, counters)
	nextOffsetO int    // offsetof(ipt_entry, next_offset)
}

var xtFamilies = []xtFamily{
	{"/proc/thread-self/net/ip_tables_names", unix.AF_INET, unix.IPPROTO_IP, 96, 90},
	{"/proc/thread-self/net/ip6_tables_names", unix.AF_INET6, unix.IPPROTO_IPV6, 152, 142},
}

// legacyDigest hashes every legacy table of the thread's network namespace,
// counters left out: `iptables-legacy-save; ip6tables-legacy-save`. It is 0
// when there are none, or none could be read.
func legacyDigest() uint64 {
	var r legacyReader
	return r.digest()
}

// legacyReader is legacyDigest with buffers kept from one read to the
// next: the rule watcher reads every legacyInterval for the daemon's whole
// life, and fresh buffers each time (2 kB a second with no table at all)
// grew an idle daemon's heap until its next collection.
type legacyReader struct {
	names, info, get []byte
}

// fnv64a is FNV-1a (hash/fnv's New64a, without its allocation).
type fnv64a uint64

const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

func (h *fnv64a) write(b []byte) {
	for _, c := range b {
		*h = (*h ^ fnv64a(c)) * fnvPrime
	}
}

func (r *legacyReader) digest() uint64 {
	h := fnv64a(fnvOffset)
	for _, f := range xtFamilies {
		names := r.readNames(f.names)
		if len(names) == 0 {
			continue
		}
		fd, err := unix.Socket(f.domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			continue
		}
		for _, name := range bytes.Fields(names) {
			h.write(name)
			r.hashTable(&h, f, fd, name)
		}
		unix.Close(fd)
	}
	if h == fnvOffset {
		return 0
	}
	return uint64(h)
}

// readNames reads the list of tables at path into r.names; nil when there
// is none (the family's module not loaded) or it is unreadable.
func (r *legacyReader) readNames(path string) []byte {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	if r.names == nil {
		r.names = make([]byte, 512)
	}
	n := 0
	for {
		if n == len(r.names) {
			r.names = append(r.names, make([]byte, len(r.names))...)
		}
		m, err := unix.Read(fd, r.names[n:])
		if err != nil || m <= 0 {
			break
		}
		n += m
	}
	return r.names[:n]
}

// hashTable writes table name's info and entries, counters zeroed, to h;
// nothing when they are unreadable.
func (r *legacyReader) hashTable(h *fnv64a, f xtFamily, fd int, name []byte) {
	// struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size.
	r.info = zeroed(r.info, 84)
	copy(r.info[:31], name)
	if getsockopt(fd, f.level, soGetInfo, r.info) != nil {
		return
	}
	size := binary.NativeEndian.Uint32(r.info[80:])
	// struct ipt_get_entries: name[32], size, padding to 8, the entries.
	r.get = zeroed(r.get, 40+int(size))
	copy(r.get[:31], name)
	binary.NativeEndian.PutUint32(r.get[32:], size)
	if getsockopt(fd, f.level, soGetEntries, r.get) != nil {
		return // changed between the two calls: the next read sees it
	}
	entries := r.get[40:]
	for off := 0; off+f.counterOff+16 <= len(entries); {
		clear(entries[off+f.counterOff : off+f.counterOff+16])
		next := int(binary.NativeEndian.Uint16(entries[off+f.nextOffsetO:]))
		if next == 0 {
			break
		}
		off += next
	}
	h.write(r.info[32:])
	h.write(entries)
}

// zeroed is b resized to n zero bytes, reallocated only to grow.
func zeroed(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	b = b[:n]
	clear(b)
	return b
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
