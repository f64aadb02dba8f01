package nat

import (
	"errors"
	"slices"
	"strings"
)

// Owners lists, sorted, the networks that have chains of kvmnet's
// (KVMNET-*-NAME) in iptables' tables or, where ip6tables is there, in
// ip6tables': what any release of kvmnet made and did not remove, whether
// or not a record says so. It costs one iptables-save and one ip6tables-save.
//
//	iptables-save | grep -o '^:KVMNET-[A-Z]*-[^ ]*'
func (f *Firewall) Owners() ([]string, error) {
	live, err := f.saveAll()
	if err != nil {
		return nil, err
	}
	names := chainOwners(live)
	if g, err := f.six(); err == nil {
		live6, err := g.saveAll()
		if err != nil {
			return nil, err
		}
		names = append(names, chainOwners(live6)...)
	} else if !errors.Is(err, ErrNoIPv6) {
		return nil, err
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// RemoveAll is Remove for IPv4 and IPv6 alike, for a network of which
// nothing but its name is known (no record: a crash's or another release's).
func (f *Firewall) RemoveAll(name string) error {
	if err := f.Remove(Network{Name: name}); err != nil {
		return err
	}
	g, err := f.six()
	if errors.Is(err, ErrNoIPv6) {
		return nil
	}
	if err != nil {
		return err
	}
	return g.Remove(Network{Name: name})
}

func chainOwners(live ruleset) []string {
	var names []string
	for _, t := range live {
		for ch := range t.chains {
			for _, p := range []string{prefixNAT, prefixPre, prefixOut, prefixAlw, prefixGrd, prefixFwd, prefixIn} {
				if n, ok := strings.CutPrefix(ch, p); ok && CheckName(n) == nil {
					names = append(names, n)
				}
			}
		}
	}
	return names
}
