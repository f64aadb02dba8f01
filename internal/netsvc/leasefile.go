package netsvc

import "github.com/kvmnet/kvmnet/internal/netsvc/ctl"

// readLeaseFile returns the records of a lease file (format: package ctl),
// sorted by address.
func readLeaseFile(path string) ([]*record, error) {
	ls, err := ctl.ReadLeaseFile(path)
	if err != nil {
		return nil, err
	}
	recs := make([]*record, 0, len(ls))
	for _, l := range ls {
		recs = append(recs, recordOf(l))
	}
	return recs, nil
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

// writeLeaseFile writes recs to path atomically.
func writeLeaseFile(path string, recs []*record) error {
	ls := make([]ctl.Lease, 0, len(recs))
	for _, r := range recs {
		ls = append(ls, r.lease())
	}
	return ctl.WriteLeaseFile(path, ls)
}

// lease converts a record to its file form.
func (r *record) lease() ctl.Lease {
	l := ctl.Lease{IP: r.ip, MAC: r.mac, Hostname: r.hostname, Expires: r.expires, Static: r.static}
	if id, ok := clientIDOfKey(r.key); ok {
		l.ClientID = id
	}
	return l
}
