package netsvc

import (
	"net/netip"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// saved is the part of the pool that outlives the daemon: the bound records
// and the held addresses (declined or found in use) with when they come back.
type saved struct {
	recs []*record
	held map[netip.Addr]time.Time
}

// readLeaseFile returns what a lease file (format: package ctl) holds.
func readLeaseFile(path string) (saved, error) {
	lf, err := ctl.ReadLeaseFile(path)
	if err != nil {
		return saved{}, err
	}
	sv := saved{recs: make([]*record, 0, len(lf.Leases)), held: map[netip.Addr]time.Time{}}
	for _, l := range lf.Leases {
		sv.recs = append(sv.recs, recordOf(l))
	}
	for _, h := range lf.Held {
		sv.held[h.IP] = h.Until
	}
	return sv, nil
}

// recordOf makes the pool record of a lease read back from the file.
func recordOf(l ctl.Lease) *record {
	r := &record{ip: l.IP, mac: l.MAC, hostname: l.Hostname, expires: l.Expires, bound: true, static: l.Static}
	r.key = macKey(l.MAC)
	if l.ClientID != "" {
		r.key = clientIDKey(l.ClientID)
	}
	return r
}

// writeLeaseFile writes sv to path atomically.
func writeLeaseFile(path string, sv saved) error {
	var lf ctl.LeaseFile
	for _, r := range sv.recs {
		lf.Leases = append(lf.Leases, r.lease())
	}
	for ip, until := range sv.held {
		lf.Held = append(lf.Held, ctl.Held{IP: ip, Until: until})
	}
	return ctl.WriteLeaseFile(path, lf)
}

// lease converts a record to its file form.
func (r *record) lease() ctl.Lease {
	l := ctl.Lease{IP: r.ip, MAC: r.mac, Hostname: r.hostname, Expires: r.expires, Static: r.static}
	if id, ok := clientIDOfKey(r.key); ok {
		l.ClientID = id
	}
	return l
}
