package nat

import (
	"slices"
	"strings"
)

// batch is one iptables-restore input under construction, per table in the
// order each table section must run: chain declarations (which create a chain,
// or flush it if it exists, even with --noflush), deletions of jumps, deletions
// of chains (now empty and unreferenced), then appends and inserts.
type batch map[string]*section

type section struct {
	decl, del, drop, add []string
}

func (b batch) sec(t string) *section {
	if b[t] == nil {
		b[t] = &section{}
	}
	return b[t]
}

func (b batch) empty() bool { return len(b) == 0 }

// commits is how many transactions the batch makes: iptables-restore commits
// each table on its own, and each commit bumps the nf_tables generation once.
func (b batch) commits() int { return len(b) }

// String renders the batch as iptables-restore input.
func (b batch) String() string {
	var w strings.Builder
	for _, t := range tableOrder {
		s := b[t]
		if s == nil {
			continue
		}
		w.WriteString("*" + t + "\n")
		for _, l := range slices.Concat(s.decl, s.del, s.drop, s.add) {
			w.WriteString(l + "\n")
		}
		w.WriteString("COMMIT\n")
	}
	return w.String()
}

// planEnsure returns the batch that turns live into live plus exactly n's
// rules: chains of n that differ are rewritten whole, jumps are inserted only
// when missing (and duplicates deleted), chains n no longer wants (after a
// mode change) are dropped, and FORWARD's kvmnet jumps are put back in their
// order (see ensureForward) when anything broke it.
func planEnsure(live ruleset, n Network) batch {
	b := batch{}
	want := chains(n)
	var fwd []chain
	for _, c := range ownedChains(n.Name) {
		i := slices.IndexFunc(want, func(w chain) bool { return w.name == c.name })
		if i < 0 {
			b.drop(live, c)
			continue
		}
		b.ensureChain(live, want[i])
		if c.parent == "FORWARD" {
			fwd = append(fwd, want[i])
			continue
		}
		b.ensureJump(live, n, want[i])
	}
	b.ensureForward(live, n, fwd)
	return b
}

// ensureChain rewrites c when its live rules differ from the wanted ones in any
// way but spelling; the declaration flushes it first, so a rewrite never doubles.
func (b batch) ensureChain(live ruleset, c chain) {
	have, exists := live.chain(c.table, c.name)
	if exists && sameRules(have, c.rules) {
		return
	}
	s := b.sec(c.table)
	s.decl = append(s.decl, ":"+c.name+" - [0:0]")
	for _, r := range c.rules {
		s.add = append(s.add, line("-A", c.name, r))
	}
}

// ensureJump keeps the first jump from c.parent into c that is spelt as kvmnet
// spells it, deletes any other rule there that jumps into c (a duplicate from a
// race, or a stale one), and inserts the jump first in c.parent when none is
// left, so that a DROP policy or a DOCKER-USER chain further down does not cut
// guests off. A jump that exists is not moved to the top.
func (b batch) ensureJump(live ruleset, n Network, c chain) {
	want := jump(n, c)
	parent, _ := live.chain(c.table, c.parent)
	found := false
	for _, r := range parent {
		if target(r) != c.name {
			continue
		}
		if !found && ruleKey(r) == ruleKey(want) {
			found = true
			continue
		}
		s := b.sec(c.table)
		s.del = append(s.del, line("-D", c.parent, r))
	}
	if !found {
		s := b.sec(c.table)
		s.add = append(s.add, line("-I", c.parent+" 1", want))
	}
}

// drop deletes chain c, if it exists, with every jump into it from c.parent.
// Only c.parent is searched: a jump some other program put elsewhere makes
// the batch fail rather than have kvmnet delete that program's rule.
func (b batch) drop(live ruleset, c chain) {
	if _, exists := live.chain(c.table, c.name); !exists {
		return
	}
	s := b.sec(c.table)
	parent, _ := live.chain(c.table, c.parent)
	for _, r := range parent {
		if target(r) == c.name {
			s.del = append(s.del, line("-D", c.parent, r))
		}
	}
	s.decl = append(s.decl, ":"+c.name+" - [0:0]")
	s.drop = append(s.drop, "-X "+c.name)
}

// sameRules reports whether two rule lists are equal in order, up to spelling.
func sameRules(have, want [][]string) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if ruleKey(have[i]) != ruleKey(want[i]) {
			return false
		}
	}
	return true
}
