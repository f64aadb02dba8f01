package nat

import (
	"slices"
	"strconv"
	"strings"
)

// The layout of FORWARD that makes verdicts independent of start order: first
// every network's jump to its guard chain, then every network's jump to its
// accept chain, then everything of other programs'. A guard only rejects or
// returns and an accept only accepts, so a packet between two kvmnet networks
// meets both networks' guards before either network's accepts.

// jumpKind tells FORWARD's kvmnet jumps apart: 'g' into a guard chain, 'a' into
// an accept chain, 0 for any other rule.
func jumpKind(r []string) byte {
	switch t := target(r); {
	case strings.HasPrefix(t, prefixGrd):
		return 'g'
	case strings.HasPrefix(t, prefixFwd):
		return 'a'
	}
	return 0
}

// ordered reports whether rules start with all their guard jumps, followed by
// all their accept jumps, with no other rule before or among them.
func ordered(rules [][]string) bool {
	phase := byte('g')
	for _, r := range rules {
		switch k := jumpKind(r); {
		case k == phase:
		case k == 'a' && phase == 'g':
			phase = 'a'
		case k == 0:
			phase = 0
		default:
			return false
		}
	}
	return true
}

// ensureForward makes FORWARD hold n's jumps into its guard and accept chains
// (want: those two chains) in the layout above. When the layout holds, only
// n's missing jumps are inserted, at the places that keep it, so a cold Ensure
// deletes nothing (a deletion costs a kernel grace period). When it does not
// (another program inserted a rule at the top, a user moved a jump), every
// kvmnet jump is deleted and inserted again in order at the top, in the same
// atomic commit, so no packet sees FORWARD without them.
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
// missing, guard first.
func ownJumps(parent [][]string, n Network, want []chain) (kept [][]string, del []string, missing [][]string) {
	jumps := map[string][]string{}
	for _, c := range want {
		jumps[c.name] = jump(n, c)
	}
	have := map[string]bool{}
	for _, r := range parent {
		t := target(r)
		w, mine := jumps[t]
		switch {
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

// insertInPlace inserts the missing jumps into an ordered FORWARD: a guard
// jump first, an accept jump right after the last guard jump. Accept jumps go
// in first, so that their position counts only guard jumps already there.
func insertInPlace(kept, missing [][]string) []string {
	guards := 0
	for _, r := range kept {
		if jumpKind(r) == 'g' {
			guards++
		}
	}
	var add []string
	for _, r := range missing {
		if jumpKind(r) == 'a' {
			add = append(add, line("-I", "FORWARD "+strconv.Itoa(guards+1), r))
		}
	}
	for _, r := range missing {
		if jumpKind(r) == 'g' {
			add = append(add, line("-I", "FORWARD 1", r))
		}
	}
	return add
}

// reorder deletes every kvmnet jump in FORWARD (duplicates of another
// network's jump included) and inserts them, with the missing ones, once each
// at the top: guard jumps, then accept jumps, each in their present order.
// Inserting only at position 1 makes the result independent of where the
// jumps were and of other programs' rules.
func reorder(kept, missing [][]string) (del, add []string) {
	for _, r := range kept {
		if jumpKind(r) != 0 {
			del = append(del, line("-D", "FORWARD", r))
		}
	}
	var grd, acc [][]string
	seen := map[string]bool{}
	for _, r := range slices.Concat(missing, kept) {
		k := jumpKind(r)
		if k == 0 || seen[ruleKey(r)] {
			continue
		}
		seen[ruleKey(r)] = true
		if k == 'g' {
			grd = append(grd, r)
		} else {
			acc = append(acc, r)
		}
	}
	top := slices.Concat(grd, acc)
	for i := len(top) - 1; i >= 0; i-- {
		add = append(add, line("-I", "FORWARD 1", top[i]))
	}
	return del, add
}
