package nat

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// ruleset is a parsed `iptables-save`: per table, the chains that exist and the
// rules of each chain in order, each the argv after `-A <chain>`.
type ruleset map[string]*table

type table struct {
	chains   map[string]bool
	policies map[string]string // builtin chains' policies: ACCEPT or DROP
	rules    map[string][][]string
}

// parseSave reads iptables-save output. It accepts only what iptables-save
// prints, so that a surprise shows up as an error instead of a wrong batch.
func parseSave(out string) (ruleset, error) {
	rs := ruleset{}
	var cur *table
	for i, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || l[0] == '#':
		case l[0] == '*':
			cur = &table{chains: map[string]bool{}, policies: map[string]string{}, rules: map[string][][]string{}}
			rs[l[1:]] = cur
		case cur == nil:
			return nil, fmt.Errorf("iptables-save line %d: %q outside a table", i+1, l)
		case l == "COMMIT":
			cur = nil
		case l[0] == ':':
			f := strings.Fields(l[1:])
			cur.chains[f[0]] = true
			if len(f) > 1 && f[1] != "-" {
				cur.policies[f[0]] = f[1]
			}
		case strings.HasPrefix(l, "-A "):
			args, err := splitArgs(l[3:])
			if err != nil || len(args) == 0 {
				return nil, fmt.Errorf("iptables-save line %d: %q: bad quoting", i+1, l)
			}
			cur.rules[args[0]] = append(cur.rules[args[0]], args[1:])
		default:
			return nil, fmt.Errorf("iptables-save line %d: unexpected %q", i+1, l)
		}
	}
	return rs, nil
}

// chain returns the rules of chain c in table t, and whether c exists.
func (rs ruleset) chain(t, c string) ([][]string, bool) {
	tb := rs[t]
	if tb == nil {
		return nil, false
	}
	return tb.rules[c], tb.chains[c]
}

// splitArgs splits a rule into words the way iptables-restore does: blanks
// separate, double quotes group, a backslash escapes the next character.
func splitArgs(s string) ([]string, error) {
	var args []string
	var w strings.Builder
	inWord, quoted, escaped := false, false, false
	for _, r := range s {
		switch {
		case escaped:
			w.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped, inWord = true, true
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				args = append(args, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted || escaped {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		args = append(args, w.String())
	}
	return args, nil
}

// target returns the chain or target a rule jumps or goes to, or "".
func target(args []string) string {
	for i := len(args) - 2; i >= 0; i-- {
		if args[i] == "-j" || args[i] == "-g" {
			return args[i+1]
		}
	}
	return ""
}

// longOpts maps the long spellings of the generic options to the short ones
// iptables-save prints.
var longOpts = map[string]string{
	"--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d",
	"--in-interface": "-i", "--out-interface": "-o", "--protocol": "-p",
	"--match": "-m", "--jump": "-j", "--goto": "-g", "--fragment": "-f",
}

// starts reports whether an option begins a new clause of a rule: a generic
// match, a match module (-m) or the target. Long options (--dport) belong to
// the clause before them.
func starts(a string) bool {
	switch a {
	case "-s", "-d", "-i", "-o", "-p", "-m", "-j", "-g", "-f":
		return true
	}
	return false
}

// ruleKey returns a key equal for two spellings of the same rule: iptables-save
// reorders matches (the comment lands in its own place), adds `/32` to host
// addresses and an explicit `-m tcp` after `-p tcp --dport`. The key splits the
// rule into clauses (a generic match, a module with its options, the target),
// canonicalises each and sorts all but the target, which stays last.
func ruleKey(args []string) string {
	var clauses []string
	tgt := ""
	for _, c := range clausesOf(canonical(args)) {
		if c[0] == "-j" || c[0] == "-g" {
			tgt = strings.Join(c, " ")
			continue
		}
		clauses = append(clauses, strings.Join(c, " "))
	}
	sort.Strings(clauses)
	return strings.Join(append(clauses, tgt), " | ")
}

// canonical spells generic options short and host addresses with /32.
func canonical(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if s, ok := longOpts[a]; ok {
			a = s
		}
		if i > 0 && (out[i-1] == "-s" || out[i-1] == "-d") && !strings.Contains(a, "/") {
			if ip, err := netip.ParseAddr(a); err == nil {
				a = netip.PrefixFrom(ip, ip.BitLen()).String()
			}
		}
		out[i] = a
	}
	return out
}

// clausesOf cuts args before every clause start ("!" goes with the option it
// negates) and moves a protocol's options (`-p tcp --dport 53`) into the
// implicit `-m tcp` clause iptables-save prints.
func clausesOf(args []string) [][]string {
	var cs [][]string
	for i, a := range args {
		neg := a == "!" && i+1 < len(args) && starts(args[i+1])
		prevNeg := i > 0 && args[i-1] == "!" && starts(a)
		if len(cs) == 0 || neg || (starts(a) && !prevNeg) {
			cs = append(cs, nil)
		}
		cs[len(cs)-1] = append(cs[len(cs)-1], a)
	}
	for i, c := range cs {
		if p := protoClause(c); p >= 0 && len(c) > p+2 {
			cs[i] = c[:p+2]
			cs = append(cs, append([]string{"-m", c[p+1]}, c[p+2:]...))
		}
	}
	return cs
}

// protoClause returns the index of "-p" if clause c is a protocol match, else -1.
func protoClause(c []string) int {
	for i, a := range c[:min(2, len(c))] {
		if a == "-p" && i+1 < len(c) {
			return i
		}
	}
	return -1
}
