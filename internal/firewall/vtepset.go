package firewall

import (
	"fmt"

	"github.com/google/nftables"

	"github.com/kvmnet/kvmnet/internal/vtepset"
)

// vtepSets lists the VTEP sets (vtepset) in kvmnet's table, by name; none
// when there is no table.
func vtepSets(r *reader, table bool) (map[string]*nftables.Set, error) {
	sets := map[string]*nftables.Set{}
	if !table {
		return sets, nil
	}
	all, err := r.c.GetSets(kvmnetTable())
	if err != nil {
		return nil, fmt.Errorf("list sets of inet %s: %w", tableName, err)
	}
	for _, s := range all {
		sets[s.Name] = s
	}
	return sets, nil
}

// ensureVTEPSet adds to batch p the VTEP set of an EVPN network n when it
// is missing, before the rule that looks it up, with the VTEPs the up read
// from the FDB (Overlay.Peers) as its elements: the resident process keeps
// them current from then on (vtepset.Sync), so an existing set's elements
// are left alone, lest an up write a read older than the resident's.
//
//	nft add set inet kvmnet vtep-NAME '{ type ipv4_addr; }'; nft add element …
func ensureVTEPSet(sets map[string]*nftables.Set, n Network, p *plan) error {
	if n.Overlay == nil || !n.Overlay.EVPN {
		return nil
	}
	s := vtepset.Set(n.Name)
	if _, ok := sets[s.Name]; ok {
		return nil
	}
	if err := p.c.AddSet(s, vtepset.Elements(n.Overlay.Peers)); err != nil {
		return fmt.Errorf("vtep set of %s: %w", n.Name, err)
	}
	p.changed = true
	return nil
}

// dropVTEPSet adds to batch c the deletion of network's VTEP set when it
// has one and keep is false; its rules must be gone in the same batch first.
//
//	nft delete set inet kvmnet vtep-NAME
func dropVTEPSet(sets map[string]*nftables.Set, network string, keep bool, c *nftables.Conn) bool {
	s, ok := sets[vtepset.Prefix+network]
	if !ok || keep {
		return false
	}
	c.DelSet(s)
	return true
}

// checkVTEPSet lists n's VTEP set when it wants one and it is missing.
func checkVTEPSet(sets map[string]*nftables.Set, n Network) []string {
	if n.Overlay == nil || !n.Overlay.EVPN {
		return nil
	}
	if _, ok := sets[vtepset.Prefix+n.Name]; ok {
		return nil
	}
	return []string{fmt.Sprintf("inet %s: set %s%s { type ipv4_addr; }", tableName, vtepset.Prefix, n.Name)}
}
