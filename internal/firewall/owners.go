package firewall

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"

	"github.com/kvmnet/kvmnet/internal/nat"
)

// Owners lists, sorted, the networks that have rules in backend b now, as
// the rules themselves say, not a record: chains named for them and, on
// nftables, rules carrying `kvmnet:NAME` (the accepts put into other
// tables' chains). Every release of kvmnet named its chains and comments so;
// a network listed here with no record is an orphan (a crash's, or one a
// downgrade left behind), which RemoveAll removes.
func Owners(b Backend) ([]string, error) {
	switch b {
	case NFTables:
		return newNFT(Host{}).owners()
	case IPTables, "":
		fw, err := nat.New()
		if err != nil {
			return nil, err
		}
		return fw.Owners()
	}
	return nil, fmt.Errorf("firewall backend %q: want nftables or iptables", b)
}

// RemoveAll removes every rule and chain of network name from backend b,
// IPv4 and IPv6, knowing nothing else of it; when it was the table's last
// network, inet kvmnet goes too.
func RemoveAll(b Backend, name string) error {
	if err := nat.CheckName(name); err != nil {
		return err
	}
	switch b {
	case NFTables:
		return newNFT(Host{}).Remove(Network{Name: name})
	case IPTables, "":
		fw, err := nat.New()
		if err != nil {
			return err
		}
		return fw.RemoveAll(name)
	}
	return fmt.Errorf("firewall backend %q: want nftables or iptables", b)
}

// owners reads inet kvmnet and the other tables' base chains kvmnet shims.
//
//	nft list ruleset | grep -o 'kvmnet:[a-z0-9_-]*'
func (f *nft) owners() ([]string, error) {
	r, lv, closeConn, err := lastingTable()
	if err != nil {
		return nil, err
	}
	defer closeConn()
	names := lv.networks()
	var rules []*nftables.Rule
	for _, b := range bases() {
		rules = append(rules, lv.rules[b.name]...)
	}
	for _, h := range hooks() {
		fcs, err := foreignChains(r, h.nf, true)
		if err != nil {
			return nil, err
		}
		for _, fc := range fcs {
			rules = append(rules, fc.rules...)
		}
	}
	for _, rule := range rules {
		if s, ok := userdata.GetString(rule.UserData, userdata.TypeComment); ok {
			if n, ok := strings.CutPrefix(s, "kvmnet:"); ok && nat.CheckName(n) == nil {
				names = append(names, n)
			}
		}
	}
	legacy, err := f.legacyOwners()
	if err != nil {
		return nil, err
	}
	names = append(names, legacy...)
	slices.Sort(names)
	return slices.Compact(names), nil
}

// legacyOwners lists the networks with shim accepts in legacy iptables'
// FORWARD and INPUT (where nf_tables cannot see them), when it has a filter
// table and iptables-legacy is there to read it.
//
//	iptables-legacy -S FORWARD | grep -- '--comment "kvmnet:NAME" -j ACCEPT'
func (f *nft) legacyOwners() ([]string, error) {
	if !f.host.legacyFilter() || f.host.lookPath("iptables-legacy") == "" {
		return nil, nil
	}
	var names []string
	for _, h := range hooks() {
		_, rules, err := f.legacyRules(h.chain)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			if n, ok := shimOwner(r); ok {
				names = append(names, n)
			}
		}
	}
	return names, nil
}

// EmptyTable reports whether inet kvmnet is there holding no network: no
// chain named for one and no rule commented for one. Nothing of kvmnet's
// makes such a table (a network's first Ensure makes the table and its
// chains in one batch, its last Remove deletes the table), so it is a left-
// over: of a teardown by hand, or of another release.
//
//	nft list table inet kvmnet
func EmptyTable() (bool, error) {
	_, lv, closeConn, err := lastingTable()
	if err != nil {
		return false, err
	}
	defer closeConn()
	return lv.empty(), nil
}

// RemoveEmptyTable deletes inet kvmnet if, under the table's lock, it
// still holds no network; it reports whether it did.
//
//	nft delete table inet kvmnet
func RemoveEmptyTable() (bool, error) {
	unlock, err := lockTable()
	if err != nil {
		return false, err
	}
	defer unlock()
	r, lv, closeConn, err := lastingTable()
	if err != nil {
		return false, err
	}
	defer closeConn()
	if !lv.empty() {
		return false, nil
	}
	r.c.DelTable(kvmnetTable())
	if err := r.c.Flush(); err != nil {
		return false, fmt.Errorf("nft delete table inet %s: %w", tableName, err)
	}
	return true, nil
}

// empty: the table is there, and neither a chain nor a rule of it names a network.
func (lv live) empty() bool {
	if !lv.table || len(lv.networks()) > 0 {
		return false
	}
	for _, rules := range lv.rules {
		for _, rule := range rules {
			if s, ok := userdata.GetString(rule.UserData, userdata.TypeComment); ok && strings.HasPrefix(s, "kvmnet:") {
				return false
			}
		}
	}
	return true
}
