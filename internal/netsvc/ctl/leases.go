package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"
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

// leaseFile is the whole file; the version lets a later format be told apart.
type leaseFile struct {
	Version int         `json:"version"`
	Leases  []leaseJSON `json:"leases"`
}

const leaseFileVersion = 1

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
	for _, l := range all {
		if now.Before(l.Expires) {
			out = append(out, l)
		}
	}
	return out, nil
}

// ReadLeaseFile returns every entry of a lease file, expired ones too (the
// daemon gives a returning client its old address), sorted by address. A
// missing file is no leases.
func ReadLeaseFile(path string) ([]Lease, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse leases %s: %w", path, err)
	}
	if f.Version != leaseFileVersion {
		return nil, fmt.Errorf("parse leases %s: unknown version %d", path, f.Version)
	}
	ls := make([]Lease, 0, len(f.Leases))
	for _, j := range f.Leases {
		if l, ok := j.lease(); ok {
			ls = append(ls, l)
		}
	}
	sortLeases(ls)
	return ls, nil
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

// WriteLeaseFile writes ls to path atomically, sorted by address.
func WriteLeaseFile(path string, ls []Lease) error {
	sortLeases(ls)
	f := leaseFile{Version: leaseFileVersion, Leases: make([]leaseJSON, 0, len(ls))}
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
	return writeFileAtomic(path, append(b, '\n'), 0o644)
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
