package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/portguard"
)

// A network's guard table, `table bridge kvmnet-NAME`, holds what guests may
// send into the bridge (docs/guard.md). It is in the bridge family, which
// sees every frame a port brings in before the bridge learns its source or
// forwards it, whether br_netfilter is loaded or not, so both backends use
// it: nf_tables is in every kernel iptables-nft runs on. Its sets' elements
// are state, never rules: Ensure creates the sets and leaves their contents
// to the packet path and the DHCP daemon (package portguard), but for the
// static hosts' leases, which are configuration.

// PortGuard is what the guard table needs to know beyond Network.
type PortGuard struct {
	// On: each guest port owns one MAC and (nat, hostonly) one IPv4 source;
	// off, only what no guest may send at all is dropped.
	On bool
	// Hosts are the static hosts: their MACs may send from their addresses.
	Hosts []GuardHost
}

// GuardHost is a static host: MAC and IPv4 address.
type GuardHost struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

// ensureGuard adds to batch p what n's guard table lacks, read through r:
// the table, its sets, the static hosts' leases and its chains, whose rules
// are rewritten only when they differ.
func ensureGuard(r *reader, n Network, p *plan) error {
	t := portguard.Table(n.Name)
	lv, err := readGuard(r, t)
	if err != nil {
		return err
	}
	if !lv.table {
		p.c.AddTable(t)
		p.changed, p.guardNew = true, true
	}
	for _, s := range portguard.Sets(n.Name, n.Mode != Isolated) {
		if !lv.sets[s.Name] {
			if err := p.c.AddSet(s, nil); err != nil {
				return fmt.Errorf("guard set %s: %w", s.Name, err)
			}
			p.changed = true
		}
	}
	if n.Mode != Isolated {
		if err := staticLeases(r.c, t, n.Guard.Hosts, lv.sets[portguard.Leases], p); err != nil {
			return err
		}
	}
	wanted := map[string]bool{}
	for _, gc := range guardChains(n) {
		wanted[gc.name] = true
		ch := guardChainOf(t, gc.name)
		rules := make([]*nftables.Rule, len(gc.rules))
		for i, br := range gc.rules {
			rules[i] = &nftables.Rule{Table: t, Chain: ch, Exprs: br.exprs, UserData: comment(n.Name)}
		}
		p.setChainBy(lv.chains, lv.rules, ch, rules, sameGuard)
	}
	// Chains the guard no longer wants (it was turned off): their callers
	// were rewritten above, in the same batch, before these go.
	for name, ch := range lv.chains {
		if !wanted[name] {
			p.c.FlushChain(ch)
			p.c.DelChain(ch)
			p.changed = true
		}
	}
	return nil
}

// guardChainOf is chain name of table t; the base chain hooks prerouting at
// filter priority, before the bridge learns the frame's source.
func guardChainOf(t *nftables.Table, name string) *nftables.Chain {
	if name != gPre {
		return &nftables.Chain{Table: t, Name: name}
	}
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Table: t, Name: name, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRef(-200), Policy: &accept} // the bridge family's "filter"
}

// guardLive is a guard table as the kernel has it.
type guardLive struct {
	table  bool
	chains map[string]*nftables.Chain
	rules  map[string][]*nftables.Rule
	sets   map[string]bool
}

// readGuard reads table t: `nft list table bridge kvmnet-NAME`.
func readGuard(r *reader, t *nftables.Table) (guardLive, error) {
	lv := guardLive{chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{}, sets: map[string]bool{}}
	tb, err := r.c.ListTableOfFamily(t.Name, t.Family)
	if errors.Is(err, unix.ENOENT) || tb == nil {
		return lv, nil
	}
	if err != nil {
		return lv, fmt.Errorf("list table bridge %s: %w", t.Name, err)
	}
	lv.table = true
	chains, err := r.allChains()
	if err != nil {
		return lv, err
	}
	for _, ch := range chains {
		if ch.Table.Family != t.Family || ch.Table.Name != t.Name {
			continue
		}
		rules, err := r.c.GetRules(t, ch)
		if err != nil {
			return lv, fmt.Errorf("list chain bridge %s %s: %w", t.Name, ch.Name, err)
		}
		lv.chains[ch.Name], lv.rules[ch.Name] = ch, rules
	}
	sets, err := r.c.GetSets(t)
	if err != nil {
		return lv, fmt.Errorf("list sets of bridge %s: %w", t.Name, err)
	}
	for _, s := range sets {
		lv.sets[s.Name] = true
	}
	return lv, nil
}

// guardPrint is a guard rule's fingerprint: as fingerprint, with its
// counters' values left out, which the traffic moves.
func guardPrint(exprs []expr.Any, udata []byte) string {
	plain := make([]expr.Any, len(exprs))
	for i, e := range exprs {
		if _, ok := e.(*expr.Counter); ok {
			e = &expr.Counter{}
		}
		plain[i] = e
	}
	return printIn(nftables.TableFamilyBridge, plain, udata)
}

func sameGuard(have, want []*nftables.Rule) bool {
	return slices.EqualFunc(have, want, func(h, w *nftables.Rule) bool {
		return guardPrint(h.Exprs, h.UserData) == guardPrint(w.Exprs, w.UserData)
	})
}

// staticLeases makes the leases set's elements without a timeout (the
// static hosts'; the daemon's all have one) exactly hosts.
func staticLeases(c *nftables.Conn, t *nftables.Table, hosts []GuardHost, exists bool, p *plan) error {
	want := map[string]GuardHost{}
	for _, h := range hosts {
		want[string(portguard.LeaseKey(h.MAC, h.IP))] = h
	}
	leases := &nftables.Set{Table: t, Name: portguard.Leases, KeyType: nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeIPAddr), HasTimeout: true, Concatenation: true}
	leased := &nftables.Set{Table: t, Name: portguard.Leased, KeyType: nftables.TypeIPAddr, HasTimeout: true}
	if exists {
		els, err := c.GetSetElements(leases)
		if err != nil {
			return fmt.Errorf("list set bridge %s %s: %w", t.Name, portguard.Leases, err)
		}
		for _, e := range els {
			if e.Timeout != 0 {
				continue
			}
			if _, ok := want[string(e.Key)]; ok {
				delete(want, string(e.Key))
				continue
			}
			if len(e.Key) < 12 {
				continue
			}
			p.changed = true
			if err := c.SetDeleteElements(leases, []nftables.SetElement{{Key: e.Key}}); err != nil {
				return err
			}
			if err := c.SetDeleteElements(leased, []nftables.SetElement{{Key: e.Key[8:12]}}); err != nil {
				return err
			}
		}
	}
	for k, h := range want {
		a := h.IP.As4()
		p.changed = true
		if err := c.SetAddElements(leases, []nftables.SetElement{{Key: []byte(k)}}); err != nil {
			return err
		}
		if err := c.SetAddElements(leased, []nftables.SetElement{{Key: a[:]}}); err != nil {
			return err
		}
	}
	return nil
}

// removeGuard adds to batch c the deletion of n's guard table, if r finds it.
//
//	nft delete table bridge kvmnet-NAME
func removeGuard(r *reader, name string) (bool, error) {
	t := portguard.Table(name)
	tb, err := r.c.ListTableOfFamily(t.Name, t.Family)
	if errors.Is(err, unix.ENOENT) || tb == nil {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list table bridge %s: %w", t.Name, err)
	}
	r.c.DelTable(t)
	return true, nil
}

// checkGuard lists, as nft prints them, the guard table's rules that are
// absent.
func checkGuard(r *reader, n Network) ([]string, error) {
	t := portguard.Table(n.Name)
	lv, err := readGuard(r, t)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, gc := range guardChains(n) {
		for _, br := range gc.rules {
			p := guardPrint(br.exprs, comment(n.Name))
			if !slices.ContainsFunc(lv.rules[gc.name], func(h *nftables.Rule) bool { return guardPrint(h.Exprs, h.UserData) == p }) {
				missing = append(missing, fmt.Sprintf("bridge %s %s: %s", t.Name, gc.name, br.text()))
			}
		}
	}
	return missing, nil
}

// Drops is what a guard table's drop rules counted: packets per rule, as
// `nft list table bridge kvmnet-NAME` shows them, keyed "CHAIN: RULE".
type Drops map[string]uint64

// GuardDrops reads the counters of network's guard table; a network with no
// guard table counted nothing.
func GuardDrops(n Network) (Drops, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	lv, err := readGuard(&reader{c: c}, portguard.Table(n.Name))
	if err != nil || !lv.table {
		return nil, err
	}
	d := Drops{}
	for _, gc := range guardChains(n) {
		for _, br := range gc.rules {
			p := guardPrint(br.exprs, comment(n.Name))
			for _, h := range lv.rules[gc.name] {
				if guardPrint(h.Exprs, h.UserData) != p {
					continue
				}
				for _, e := range h.Exprs {
					if ctr, ok := e.(*expr.Counter); ok {
						d[gc.name+": "+br.text()] += ctr.Packets
					}
				}
			}
		}
	}
	return d, nil
}

// EnsureGuard is ensureGuard in a batch of its own, for the iptables
// backend, whose own rules are not in nf_tables' netlink batches. Only
// Changed and GuardNew are set.
func EnsureGuard(n Network) (Result, error) {
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return Result{}, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	p := &plan{c: c}
	if err := ensureGuard(&reader{c: c}, n, p); err != nil {
		return Result{}, err
	}
	if !p.changed {
		return Result{}, nil
	}
	if err := c.Flush(); err != nil {
		return Result{}, fmt.Errorf("nftables guard batch for %s: %w", n.Name, err)
	}
	return Result{Changed: true, GuardNew: p.guardNew}, nil
}

// RemoveGuard deletes network's guard table, if any.
func RemoveGuard(name string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	found, err := removeGuard(&reader{c: c}, name)
	if err != nil || !found {
		return err
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table bridge %s: %w", portguard.Table(name).Name, err)
	}
	return nil
}
