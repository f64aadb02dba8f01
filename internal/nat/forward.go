package nat

import (
	"slices"
	"strings"
)

// Forward is how the filter FORWARD chain treats a network's bridged traffic,
// which crosses FORWARD too when br_netfilter's bridge-nf-call-iptables is 1.
type Forward struct {
	Policy string // FORWARD's policy: ACCEPT or DROP
	// Jump is the position (0 first) of the later of the network's two jumps
	// (to its guard and its accept chain), -1 when either is missing. Those
	// chains accept or reject all of the bridge's traffic, so whatever comes
	// after the jump never sees it.
	Jump int
	// Blocker is the position of the first rule of another program that may
	// drop or reject the bridge's traffic, -1 when there is none, and Rule that
	// rule as iptables-save prints it.
	Blocker int
	Rule    string
}

// Forward reads FORWARD as it bears on network n.
//
//	iptables-save -t filter
func (f *Firewall) Forward(n Network) (Forward, error) {
	live, err := f.saveAll()
	if err != nil {
		return Forward{}, err
	}
	fw := Forward{Policy: "ACCEPT", Jump: -1, Blocker: -1}
	if t := live["filter"]; t != nil && t.policies["FORWARD"] != "" {
		fw.Policy = t.policies["FORWARD"]
	}
	rules, _ := live.chain(tableFilter, "FORWARD")
	mine := comment(n)
	jumps := map[string]int{prefixGrd + n.Name: -1, prefixFwd + n.Name: -1}
	for i, r := range rules {
		t := target(r)
		switch pos, ok := jumps[t]; {
		case ok && pos < 0:
			jumps[t] = i
		case fw.Blocker < 0 && Blocks(r, n.Bridge) && !slices.Equal(commentOf(r), mine):
			fw.Blocker, fw.Rule = i, line("-A", "FORWARD", r)
		}
	}
	if g, a := jumps[prefixGrd+n.Name], jumps[prefixFwd+n.Name]; g >= 0 && a >= 0 {
		fw.Jump = max(g, a)
	}
	return fw, nil
}

// Blocks reports whether iptables rule r (its words after `-A CHAIN`, as
// iptables -S prints them) drops or rejects and its interface matches (-i,
// -o, with "!" and the "+" wildcard) do not rule bridge br out.
func Blocks(r []string, br string) bool {
	if t := target(r); t != "DROP" && t != "REJECT" {
		return false
	}
	for i := 0; i+1 < len(r); i++ {
		neg := r[i] == "!"
		if neg {
			i++
		}
		if i+1 >= len(r) || (r[i] != "-i" && r[i] != "-o") {
			continue
		}
		if ifMatch(r[i+1], br) == neg {
			return false
		}
	}
	return true
}

// ifMatch is iptables' interface match: exact, or a prefix ending in "+".
func ifMatch(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

// commentOf returns the comment match of a rule, or nil.
func commentOf(r []string) []string {
	for i := 0; i+3 < len(r); i++ {
		if r[i] == "-m" && r[i+1] == "comment" && r[i+2] == "--comment" {
			return r[i : i+4]
		}
	}
	return nil
}
