package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Lease is one entry of a lease file, as `kvmnet status` and `kvmnet leases`
// show it and as the daemon persists its pool.
type Lease struct {
	IP       netip.Addr
	MAC      net.HardwareAddr
	ClientID string // option 61 in hex, "" when the client sent none
	Hostname string
	Expires  time.Time
	Static   bool
}

// leaseJSON is the on-disk form of a Lease.
type leaseJSON struct {
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"`
	ClientID string     `json:"client_id,omitempty"`
	Hostname string     `json:"hostname,omitempty"`
	Expires  time.Time  `json:"expires"`
	Static   bool       `json:"static,omitempty"`
}

// heldJSON is the on-disk form of a Held.
type heldJSON struct {
	IP    netip.Addr `json:"ip"`
	Until time.Time  `json:"until"`
}

// leaseFileJSON is the whole file; the version lets a later format be told
// apart. Held was added later: older daemons ignore it.
type leaseFileJSON struct {
	Version int         `json:"version"`
	Leases  []leaseJSON `json:"leases"`
	Held    []heldJSON  `json:"held,omitempty"`
	// CopyOf marks a copy left for an older release (olderleases.go):
	// the base name of the file it copies. Older daemons ignore it.
	CopyOf string `json:"copy_of,omitempty"`
}

const leaseFileVersion = 1

// maxLeaseFileSize bounds what is read: a full /16 of leases is about 10 MB.
const maxLeaseFileSize = 32 << 20

// Held is an address kept out of the pool until Until: a client DECLINEd it,
// or an ARP probe found another host using it. It is persisted with the
// leases, so that a restarted daemon does not hand the address out at once.
type Held struct {
	IP    netip.Addr
	Until time.Time
}

// LeaseFile is what a lease file holds.
type LeaseFile struct {
	Leases []Lease
	Held   []Held
	// CopyOf is set in a copy of another lease file left for an older
	// release (LeaveForOlder): the copied file's base name.
	CopyOf string
}

// ErrBadLeaseFile marks a lease file that exists but is not one kvmnet wrote:
// empty, truncated, unparsable, of an unknown version, too large, or a
// symbolic link. The daemon sets such a file aside and starts empty.
var ErrBadLeaseFile = errors.New("not a kvmnet lease file")

// Leases reads a lease file and returns its leases that have not expired,
// sorted by address. A missing file is no leases, not an error: the daemon
// has not handed any out yet.
func Leases(path string) ([]Lease, error) {
	all, err := ReadLeaseFile(path)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Lease
	for _, l := range all.Leases {
		if now.Before(l.Expires) {
			out = append(out, l)
		}
	}
	return out, nil
}

// ReadLeaseFile returns every entry of a lease file, expired ones too (the
// daemon gives a returning client its old address), sorted by address, and
// the held addresses. A missing file is no leases. It never follows a
// symbolic link (a planted link must not make root read another file); a file
// that is not a lease file gives an error wrapping ErrBadLeaseFile.
func ReadLeaseFile(path string) (LeaseFile, error) {
	b, err := readNoFollow(path, maxLeaseFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return LeaseFile{}, nil
	}
	if err != nil {
		return LeaseFile{}, fmt.Errorf("read leases %s: %w", path, err)
	}
	var f leaseFileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return LeaseFile{}, fmt.Errorf("parse leases %s: %w: %w", path, ErrBadLeaseFile, err)
	}
	if f.Version != leaseFileVersion {
		return LeaseFile{}, fmt.Errorf("parse leases %s: %w: version %d", path, ErrBadLeaseFile, f.Version)
	}
	if f.CopyOf != "" && f.CopyOf != filepath.Base(path) {
		// Another namespace's leases, left under this name for an older
		// release: none of them are this network's.
		return LeaseFile{CopyOf: f.CopyOf}, nil
	}
	out := LeaseFile{CopyOf: f.CopyOf}
	for _, j := range f.Leases {
		if l, ok := j.lease(); ok {
			out.Leases = append(out.Leases, l)
		}
	}
	for _, h := range f.Held {
		if h.IP.Is4() {
			out.Held = append(out.Held, Held(h))
		}
	}
	sortLeases(out.Leases)
	return out, nil
}

// readNoFollow reads a regular file of at most limit bytes without following
// a symbolic link at its last component (O_NOFOLLOW) and without blocking on
// a FIFO (O_NONBLOCK). A link, an empty file or one over limit wraps
// ErrBadLeaseFile; a directory or device is an ordinary error.
func readNoFollow(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: a symbolic link", ErrBadLeaseFile)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	case st.Size() == 0:
		return nil, fmt.Errorf("%w: empty", ErrBadLeaseFile)
	case st.Size() > limit:
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrBadLeaseFile, st.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// lease converts a file entry back; entries that make no sense are skipped
// rather than failing the whole file, so one bad line costs one lease. The
// hostname is sanitized again: the file may have been edited by hand, and
// the name ends up in DNS answers and status tables.
func (j leaseJSON) lease() (Lease, bool) {
	mac, err := net.ParseMAC(j.MAC)
	if err != nil || !j.IP.Is4() {
		return Lease{}, false
	}
	return Lease{IP: j.IP, MAC: mac, ClientID: j.ClientID, Hostname: SanitizeHostname(j.Hostname),
		Expires: j.Expires, Static: j.Static}, true
}

// WriteLeaseFile writes lf to path atomically (a new file renamed over the old
// one, which also replaces a planted link rather than writing through it),
// leases sorted by address.
func WriteLeaseFile(path string, lf LeaseFile) error {
	ls := lf.Leases
	sortLeases(ls)
	f := leaseFileJSON{Version: leaseFileVersion, Leases: make([]leaseJSON, 0, len(ls)), CopyOf: lf.CopyOf}
	for _, h := range lf.Held {
		f.Held = append(f.Held, heldJSON{IP: h.IP, Until: h.Until.UTC().Truncate(time.Second)})
	}
	sort.Slice(f.Held, func(i, j int) bool { return f.Held[i].IP.Less(f.Held[j].IP) })
	for _, l := range ls {
		f.Leases = append(f.Leases, leaseJSON{
			IP: l.IP, MAC: l.MAC.String(), ClientID: l.ClientID, Hostname: l.Hostname,
			Expires: l.Expires.UTC().Truncate(time.Second), Static: l.Static,
		})
	}
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("encode leases: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644, true)
}

func sortLeases(ls []Lease) {
	sort.Slice(ls, func(i, j int) bool { return ls[i].IP.Less(ls[j].IP) })
}

// SanitizeHostname turns what a client calls itself into one lowercase DNS
// label, or "" when nothing usable is left. Only the first label counts: the
// guest lives under our domain, whatever domain it thinks it is in.
func SanitizeHostname(s string) string {
	s, _, _ = strings.Cut(strings.ToLower(s), ".")
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
			b[i] = '-'
		}
	}
	s = strings.Trim(string(b), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

// SetAside renames a bad lease file to path.corrupt (replacing an older one),
// so that the daemon can start empty without destroying what an admin may
// want to look at. It renames a symbolic link itself, never its target.
func SetAside(path string) (string, error) {
	aside := path + ".corrupt"
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("set aside lease file %s: %w", path, err)
	}
	return aside, nil
}

// ErrLeaseFileInUse: another daemon holds the lease file's lock.
var ErrLeaseFileInUse = errors.New("in use by another netsvc daemon")

// LockLeaseFile takes an exclusive flock on path.lock, which the daemon holds
// while it runs, so that two daemons can never share a lease file (each would
// overwrite the other's leases). The lease file itself cannot carry the lock:
// every write replaces it with a new file. The lock file stays: removing it
// would race with a daemon that has just opened it.
func LockLeaseFile(path string) (*os.File, error) {
	lock := path + ".lock"
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock lease file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lease file %s: %w (%s is locked)", path, ErrLeaseFileInUse, lock)
		}
		return nil, fmt.Errorf("lock lease file %s: %w", path, err)
	}
	return f, nil
}
