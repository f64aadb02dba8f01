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
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	r := &reader{c: c}
	lv, err := readTable(r)
	if err != nil {
		return nil, err
	}
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
	slices.Sort(names)
	return slices.Compact(names), nil
}
