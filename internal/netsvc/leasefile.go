package netsvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sort"
	"time"
)

// Lease is one entry of a lease file, as `kvmnet status` and `kvmnet leases`
// show it.
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
	recs, err := readLeaseFile(path)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Lease
	for _, r := range recs {
		if r.active(now) {
			out = append(out, r.lease())
		}
	}
	return out, nil
}

// lease converts a record to its exported form.
func (r *record) lease() Lease {
	l := Lease{IP: r.ip, MAC: r.mac, Hostname: r.hostname, Expires: r.expires, Static: r.static}
	if id, ok := clientIDOfKey(r.key); ok {
		l.ClientID = id
	}
	return l
}

// readLeaseFile returns the records of path, sorted by address.
func readLeaseFile(path string) ([]*record, error) {
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
	recs := make([]*record, 0, len(f.Leases))
	for _, j := range f.Leases {
		if r, ok := j.record(); ok {
			recs = append(recs, r)
		}
	}
	sortRecords(recs)
	return recs, nil
}

// record converts a file entry back; entries that make no sense are skipped
// rather than failing the whole file, so one bad line costs one lease.
func (j leaseJSON) record() (*record, bool) {
	mac, err := net.ParseMAC(j.MAC)
	if err != nil || !j.IP.Is4() {
		return nil, false
	}
	r := &record{ip: j.IP, mac: mac, hostname: sanitizeHostname(j.Hostname), expires: j.Expires, bound: true, static: j.Static}
	r.key = macKey(mac)
	if j.ClientID != "" {
		r.key = clientIDKey(j.ClientID)
	}
	return r, true
}

// writeLeaseFile writes recs to path atomically.
func writeLeaseFile(path string, recs []*record) error {
	sortRecords(recs)
	f := leaseFile{Version: leaseFileVersion, Leases: make([]leaseJSON, 0, len(recs))}
	for _, r := range recs {
		l := r.lease()
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

func sortRecords(recs []*record) {
	sort.Slice(recs, func(i, j int) bool { return recs[i].ip.Less(recs[j].ip) })
}
