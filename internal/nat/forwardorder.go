package nat

import (
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
	jumps := map[string][]string{}
	for _, c := range want {
		jumps[c.name] = jump(n, c)
	}
	var s section
	defer func() {
		if len(s.del)+len(s.add) > 0 {
			t := b.sec(tableFilter)
			t.del, t.add = append(t.del, s.del...), append(t.add, s.add...)
		}
	}()
	have := map[string]bool{}
	var kept [][]string
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
			s.del = append(s.del, line("-D", "FORWARD", r))
		}
	}
	var grd, acc [][]string
	for _, c := range want {
		if !have[c.name] {
			if jumpKind(jumps[c.name]) == 'g' {
				grd = append(grd, jumps[c.name])
			} else {
				acc = append(acc, jumps[c.name])
			}
		}
	}
	if ordered(kept) {
		guards := 0
		for _, r := range kept {
			if jumpKind(r) == 'g' {
				guards++
			}
		}
		// Inserted bottom-up, so that each position counts only rules already there.
		for _, r := range acc {
			s.add = append(s.add, line("-I", "FORWARD "+strconv.Itoa(guards+1), r))
		}
		for _, r := range grd {
			s.add = append(s.add, line("-I", "FORWARD 1", r))
		}
		return
	}
	seen := map[string]bool{}
	for _, r := range kept {
		k := jumpKind(r)
		if k == 0 {
			continue
		}
		s.del = append(s.del, line("-D", "FORWARD", r))
		if seen[ruleKey(r)] { // a duplicate of another network's jump goes too
			continue
		}
		seen[ruleKey(r)] = true
		if k == 'g' {
			grd = append(grd, r)
		} else {
			acc = append(acc, r)
		}
	}
	top := append(grd, acc...)
	for i := len(top) - 1; i >= 0; i-- {
		s.add = append(s.add, line("-I", "FORWARD 1", top[i]))
	}
}
