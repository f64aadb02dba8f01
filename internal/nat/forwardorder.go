package nat

import (
	"slices"
	"strconv"
	"strings"
)

// The layout of FORWARD that makes verdicts independent of start order: first
// every network's jump to its allow chain (only networks with AllowFrom have
// one), then every network's jump to its guard chain, then every network's
// jump to its accept chain, then everything of other programs'. An allow chain
// accepts only what a network's configuration lets in from named others, a
// guard only rejects or returns and an accept only accepts, so a packet
// between two kvmnet networks that no allow chain accepts meets both networks'
// guards before either network's accepts.

// tier is a FORWARD rule's place in that layout: tierAllow, tierGuard or
// tierAccept for kvmnet's jumps, tierOther for anything else.
type tier int

const (
	tierOther tier = iota
	tierAllow
	tierGuard
	tierAccept
)

// tierOf returns rule r's tier, by the chain it jumps to.
func tierOf(r []string) tier {
	switch t := target(r); {
	case strings.HasPrefix(t, prefixAlw):
		return tierAllow
	case strings.HasPrefix(t, prefixGrd):
		return tierGuard
	case strings.HasPrefix(t, prefixFwd):
		return tierAccept
	}
	return tierOther
}

// ordered reports whether rules start with all kvmnet's jumps, tier by tier,
// with no other rule before or among them.
func ordered(rules [][]string) bool {
	last := tierAllow
	for _, r := range rules {
		t := tierOf(r)
		switch {
		case last == tierOther && t != tierOther:
			return false
		case t == tierOther:
			last = tierOther
		case t < last:
			return false
		default:
			last = t
		}
	}
	return true
}

// place returns where in an ordered FORWARD a new jump of tier t goes: right
// after the last jump of its tier or a lower one (1 is the top).
func place(rules [][]string, t tier) int {
	n := 0
	for _, r := range rules {
		if k := tierOf(r); k != tierOther && k <= t {
			n++
		}
	}
	return n + 1
}

// ensureForward makes FORWARD hold n's jumps into its FORWARD chains (want) in
// the layout above. When the layout holds, only n's missing jumps are
// inserted, at the places that keep it, so a cold Ensure deletes nothing (a
// deletion costs a kernel grace period). When it does not (another program
// inserted a rule at the top, a user moved a jump), every kvmnet jump is
// deleted and inserted again in order at the top, in the same atomic commit, so
// no packet sees FORWARD without them.
func (b batch) ensureForward(live ruleset, n Network, want []chain) {
	parent, _ := live.chain(tableFilter, "FORWARD")
	kept, del, missing := ownJumps(parent, n, want)
	var add []string
	if ordered(kept) {
		add = insertInPlace(kept, missing)
	} else {
		var moved []string
		moved, add = reorder(kept, missing)
		del = append(del, moved...)
	}
	if len(del)+len(add) > 0 {
		s := b.sec(tableFilter)
		s.del, s.add = append(s.del, del...), append(s.add, add...)
	}
}

// ownJumps returns FORWARD's rules as they stand once n's duplicate or
// misspelt jumps are deleted (kept), those deletions, and n's jumps that are
// missing, in tier order. Jumps into n's chains that it no longer wants are
// left out of kept: drop deletes them.
func ownJumps(parent [][]string, n Network, want []chain) (kept [][]string, del []string, missing [][]string) {
	jumps := map[string][]string{}
	for _, c := range want {
		jumps[c.name] = jump(n, c)
	}
	owned := map[string]bool{}
	for _, c := range ownedChains(n.Name) {
		owned[c.name] = true
	}
	have := map[string]bool{}
	for _, r := range parent {
		t := target(r)
		w, mine := jumps[t]
		switch {
		case !mine && owned[t]:
		case !mine:
			kept = append(kept, r)
		case !have[t] && ruleKey(r) == ruleKey(w):
			have[t] = true
			kept = append(kept, r)
		default: // a duplicate, or spelt otherwise than kvmnet spells it
			del = append(del, line("-D", "FORWARD", r))
		}
	}
	for _, c := range want {
		if !have[c.name] {
			missing = append(missing, jumps[c.name])
		}
	}
	return kept, del, missing
}

// insertInPlace inserts the missing jumps into an ordered FORWARD, each right
// after the last jump of its tier. Higher tiers go in first, so that each
// position counts only jumps already there.
func insertInPlace(kept, missing [][]string) []string {
	var add []string
	for i := len(missing) - 1; i >= 0; i-- {
		r := missing[i]
		add = append(add, line("-I", "FORWARD "+strconv.Itoa(place(kept, tierOf(r))), r))
	}
	return add
}

// reorder deletes every kvmnet jump in FORWARD (duplicates of another
// network's jump included) and inserts them, with the missing ones, once each
// at the top, tier by tier, each tier in its present order and the missing
// ones last in theirs, as insertInPlace puts them. Inserting only at
// position 1 makes the result independent of where the jumps were and of other
// programs' rules.
func reorder(kept, missing [][]string) (del, add []string) {
	for _, r := range kept {
		if tierOf(r) != tierOther {
			del = append(del, line("-D", "FORWARD", r))
		}
	}
	var top [][]string
	seen := map[string]bool{}
	for _, t := range []tier{tierAllow, tierGuard, tierAccept} {
		for _, r := range slices.Concat(kept, missing) {
			if tierOf(r) == t && !seen[ruleKey(r)] {
				seen[ruleKey(r)] = true
				top = append(top, r)
			}
		}
	}
	for i := len(top) - 1; i >= 0; i-- {
		add = append(add, line("-I", "FORWARD 1", top[i]))
	}
	return del, add
}
