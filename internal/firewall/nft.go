package firewall

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/kvmnet/kvmnet/internal/nat"
)

// nft is the nftables runner. It holds no state between calls.
type nft struct{ host Host }

func newNFT(h Host) *nft { return &nft{host: h} }

func (*nft) Backend() Backend { return NFTables }

// live is kvmnet's table as the kernel has it: chains and their rules.
type live struct {
	table  bool
	chains map[string]*nftables.Chain
	rules  map[string][]*nftables.Rule
}

// reader reads nf_tables over one connection, and dumps the chains of all
// tables once for every question about them.
type reader struct {
	c      *nftables.Conn
	chains []*nftables.Chain
	read   bool
}

// lasting opens one netlink connection for several reads (and perhaps one
// batch); close releases it.
func lasting() (r *reader, close func(), err error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, nil, fmt.Errorf("nftables: %w", err)
	}
	return &reader{c: c}, func() { _ = c.CloseLasting() }, nil
}

// lastingTable is lasting with inet kvmnet read through it, as most of
// those reads begin.
func lastingTable() (*reader, live, func(), error) {
	r, closeConn, err := lasting()
	if err != nil {
		return nil, live{}, nil, err
	}
	lv, err := readTable(r)
	if err != nil {
		closeConn()
		return nil, live{}, nil, err
	}
	return r, lv, closeConn, nil
}

// allChains equals `nft list chains`.
func (r *reader) allChains() ([]*nftables.Chain, error) {
	if !r.read {
		chains, err := r.c.ListChains()
		if err != nil {
			return nil, fmt.Errorf("list nftables chains: %w", err)
		}
		r.chains, r.read = chains, true
	}
	return r.chains, nil
}

// readTable equals `nft list table inet kvmnet`: the chains, and one dump of
// each one's rules.
func readTable(r *reader) (live, error) {
	lv := live{chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{}}
	chains, err := r.allChains()
	if err != nil {
		return lv, err
	}
	for _, ch := range chains {
		if ch.Table.Family != nftables.TableFamilyINet || ch.Table.Name != tableName {
			continue
		}
		lv.table = true
		rules, err := r.c.GetRules(ch.Table, ch)
		if err != nil {
			return lv, fmt.Errorf("list chain inet %s %s: %w", tableName, ch.Name, err)
		}
		lv.chains[ch.Name], lv.rules[ch.Name] = ch, rules
	}
	if !lv.table {
		// A table with no chain at all (left by someone) still exists.
		t, err := r.c.ListTableOfFamily(tableName, nftables.TableFamilyINet)
		lv.table = err == nil && t != nil
	}
	return lv, nil
}

// networks lists, sorted, the networks with a chain in the table.
func (lv live) networks() []string {
	var ns []string
	for name := range lv.chains {
		if _, n, ok := chainNetwork(name); ok {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return slices.Compact(ns)
}

// fingerprint is a rule's expressions as the kernel takes them, and its
// comment: two rules with equal fingerprints match and do the same.
func fingerprint(exprs []expr.Any, udata []byte) string {
	return printIn(nftables.TableFamilyINet, exprs, udata)
}

// printIn is fingerprint in family f's marshalling.
func printIn(f nftables.TableFamily, exprs []expr.Any, udata []byte) string {
	var b bytes.Buffer
	for _, e := range exprs {
		m, err := expr.Marshal(byte(f), e)
		if err != nil {
			return "unmarshalable"
		}
		b.Write(m)
		b.WriteByte(0xff)
	}
	b.Write(udata)
	return b.String()
}

// same reports whether live rules are exactly want, in order.
func same(have []*nftables.Rule, want []*nftables.Rule) bool {
	return slices.EqualFunc(have, want, func(h, w *nftables.Rule) bool {
		return fingerprint(h.Exprs, h.UserData) == fingerprint(w.Exprs, w.UserData)
	})
}

// plan is what Ensure writes into one batch.
type plan struct {
	c       *nftables.Conn
	t       *nftables.Table
	changed bool
	// guardNew: the batch makes the guard table (ensureGuard).
	guardNew bool
}

// setChain makes chain ch hold exactly rules: added when missing, flushed
// and refilled when its rules differ.
func (p *plan) setChain(lv live, ch *nftables.Chain, rules []*nftables.Rule) {
	p.setChainBy(lv.chains, lv.rules, ch, rules, same)
}

// setChainBy is setChain over chains and rules as read, with eq telling
// whether live rules are the wanted ones.
func (p *plan) setChainBy(chains map[string]*nftables.Chain, live map[string][]*nftables.Rule, ch *nftables.Chain, rules []*nftables.Rule, eq func(have, want []*nftables.Rule) bool) {
	have, exists := chains[ch.Name]
	if exists && eq(live[ch.Name], rules) {
		return
	}
	p.changed = true
	if !exists {
		p.c.AddChain(ch)
	} else {
		p.c.FlushChain(have)
	}
	for _, r := range rules {
		p.c.AddRule(r)
	}
}

// Ensure reads kvmnet's table and writes, in one netlink batch that the
// kernel commits atomically, whatever differs from what n and every other
// network in the table want: n's chains, and the base chains' jumps, which
// are rebuilt from the networks present, guards first, so that a flushed or
// reordered base chain heals for all networks at once. The batch also holds
// the shim (shim.go) in other tables' forward and input chains that would
// drop guests; legacy iptables' shim needs iptables-legacy, after the batch.
//
//	nft -f - <<< 'table inet kvmnet { ... }'
func (f *nft) Ensure(n Network) (Result, error) {
	if err := n.Validate(); err != nil {
		return Result{}, err
	}
	unlock, err := lockTable()
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	gen, genErr := nat.Generation()
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return Result{}, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	r := &reader{c: c}
	lv, err := readTable(r)
	if err != nil {
		return Result{}, err
	}
	sets, err := vtepSets(r, lv.table)
	if err != nil {
		return Result{}, err
	}
	p := &plan{c: c, t: kvmnetTable()}
	if !lv.table {
		c.AddTable(p.t)
		p.changed = true
	}
	if err := ensureVTEPSet(sets, n, p); err != nil {
		return Result{}, err
	}
	wanted := map[string]bool{}
	for _, nc := range netChains(n) {
		wanted[nc.name] = true
		ch := &nftables.Chain{Table: p.t, Name: nc.name}
		rules := make([]*nftables.Rule, len(nc.rules))
		for i, s := range nc.rules {
			rules[i] = s.rule(ch, n.Name)
		}
		p.setChain(lv, ch, rules)
	}
	exists := func(chain string) bool {
		if _, net, _ := chainNetwork(chain); net == n.Name {
			return wanted[chain]
		}
		_, ok := lv.chains[chain]
		return ok
	}
	networks := append(lv.networks(), n.Name)
	slices.Sort(networks)
	networks = slices.Compact(networks)
	for _, b := range bases() {
		js := jumps(b, p.t, networks, exists)
		if _, ok := lv.chains[b.name]; b.lazy && !ok && len(js) == 0 {
			continue
		}
		p.setChain(lv, b.chain(p.t), js)
	}
	for _, pre := range netPrefixes {
		if ch, ok := lv.chains[pre+n.Name]; ok && !wanted[pre+n.Name] {
			c.FlushChain(ch)
			c.DelChain(ch)
			p.changed = true
		}
	}
	if dropVTEPSet(sets, n.Name, n.Overlay != nil && n.Overlay.EVPN, c) {
		p.changed = true
	}
	legacy, err := f.shim(r, n, p)
	if err != nil {
		return Result{}, err
	}
	if err := ensureGuard(r, n, p); err != nil {
		return Result{}, err
	}
	if p.changed {
		if err := c.Flush(); err != nil {
			return Result{}, fmt.Errorf("nftables batch for %s: %w", n.Name, err)
		}
	}
	if legacy != nil {
		changed, err := legacy()
		if err != nil {
			return Result{}, err
		}
		p.changed = p.changed || changed
	}
	if !p.changed {
		return Result{Gen: gen, GenOK: genErr == nil}, nil
	}
	// One batch is one transaction: the generation moves by exactly one
	// unless someone else committed in between.
	after, err := nat.Generation()
	return Result{Changed: true, Gen: after, GenOK: genErr == nil && err == nil && after == gen+1, GuardNew: p.guardNew}, nil
}

// jumps are base chain b's rules: one jump per per-network chain that exists,
// prefix by prefix, networks sorted.
func jumps(b base, t *nftables.Table, networks []string, exists func(string) bool) []*nftables.Rule {
	ch := b.chain(t)
	var rs []*nftables.Rule
	for _, pre := range b.prefixes {
		for _, net := range networks {
			if exists(pre + net) {
				rs = append(rs, newSpec(true).jump(pre+net).rule(ch, net))
			}
		}
	}
	return rs
}

// Remove deletes n's chains, its jumps and its shim rules in one batch, and
// the whole table with the last network. A network already gone is no error.
//
//	nft delete table inet kvmnet  (the last network)
//	nft delete rule inet kvmnet forward handle H; nft delete chain inet kvmnet fwd-NAME …
func (f *nft) Remove(n Network) error {
	if err := nat.CheckName(n.Name); err != nil {
		return err
	}
	unlock, err := lockTable()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	r := &reader{c: c}
	lv, err := readTable(r)
	if err != nil {
		return err
	}
	mine := comment(n.Name)
	changed := false
	others := slices.DeleteFunc(lv.networks(), func(s string) bool { return s == n.Name })
	switch {
	case lv.table && len(others) == 0:
		c.DelTable(kvmnetTable())
		changed = true
	case lv.table:
		for _, b := range bases() {
			for _, rule := range lv.rules[b.name] {
				if bytes.Equal(rule.UserData, mine) {
					if err := c.DelRule(rule); err != nil {
						return fmt.Errorf("delete rule of %s: %w", n.Name, err)
					}
					changed = true
				}
			}
		}
		for _, pre := range netPrefixes {
			if ch, ok := lv.chains[pre+n.Name]; ok {
				c.FlushChain(ch)
				c.DelChain(ch)
				changed = true
			}
		}
		sets, err := vtepSets(r, lv.table)
		if err != nil {
			return err
		}
		changed = dropVTEPSet(sets, n.Name, false, c) || changed
	}
	shimChanged, err := f.unshim(r, n)
	if err != nil {
		return err
	}
	guarded, err := removeGuard(r, n.Name)
	if err != nil {
		return err
	}
	if changed || shimChanged || guarded {
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables batch removing %s: %w", n.Name, err)
		}
	}
	return f.unshimLegacy(n)
}

// Check lists, as `nft` prints them, n's rules that are absent now; a rule
// present in the wrong place is not reported, though Ensure would rewrite its
// chain. It reads what `nft list ruleset` shows and changes nothing.
func (f *nft) Check(n Network) ([]string, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	r, lv, closeConn, err := lastingTable()
	if err != nil {
		return nil, err
	}
	defer closeConn()
	sets, err := vtepSets(r, lv.table)
	if err != nil {
		return nil, err
	}
	missing := checkVTEPSet(sets, n)
	t := kvmnetTable()
	present := func(chain string, r *nftables.Rule) bool {
		return slices.ContainsFunc(lv.rules[chain], func(h *nftables.Rule) bool {
			return fingerprint(h.Exprs, h.UserData) == fingerprint(r.Exprs, r.UserData)
		})
	}
	for _, nc := range netChains(n) {
		ch := &nftables.Chain{Table: t, Name: nc.name}
		for _, s := range nc.rules {
			if !present(nc.name, s.rule(ch, n.Name)) {
				missing = append(missing, fmt.Sprintf("inet %s %s: %s", tableName, nc.name, s.text()))
			}
		}
		for _, b := range bases() {
			if !slices.Contains(b.prefixes, nc.name[:len(nc.name)-len(n.Name)]) {
				continue
			}
			j := newSpec(true).jump(nc.name)
			if !present(b.name, j.rule(b.chain(t), n.Name)) {
				missing = append(missing, fmt.Sprintf("inet %s %s: %s", tableName, b.name, j.text()))
			}
		}
	}
	more, err := f.checkShim(r, n)
	if err != nil {
		return nil, err
	}
	guard, err := checkGuard(r, n)
	return append(append(missing, more...), guard...), err
}

// Unchanged reports whether the nf_tables generation (`nft monitor`'s "new
// generation N") still equals gen. It proves nothing when legacy iptables
// has a filter table, whose changes do not move the generation and may need
// the shim: then it is false.
func (f *nft) Unchanged(gen uint32) bool {
	if f.host.legacyFilter() {
		return false
	}
	cur, err := nat.Generation()
	return err == nil && cur == gen
}
