package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The shim. A verdict of kvmnet's table is not the last word: a packet it
// accepts goes on to every other base chain on the hook, and iptables'
// FORWARD (Docker, ufw and firewalld's iptables backend leave its policy
// DROP) drops it there. No table can overrule another's drop, so when the
// host's filter FORWARD would drop guests, kvmnet puts its accept rules
// (acceptRules with inet false), commented kvmnet:NAME, first in that
// FORWARD too. They let by only what kvmnet's own chains accepted: its
// guards ran before them (priority filter - 1) and rejected the rest.
// iptables-nft's FORWARD is an nf_tables chain, written over netlink in
// Ensure's batch; legacy's FORWARD is out of netlink's reach, so only there
// kvmnet execs iptables-legacy.

// filterForward finds iptables-nft's `ip filter FORWARD`, nil when none.
func filterForward(c *nftables.Conn) (*nftables.Chain, []*nftables.Rule, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, nil, fmt.Errorf("list ip chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == "filter" && ch.Name == "FORWARD" {
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				return nil, nil, fmt.Errorf("list chain ip filter FORWARD: %w", err)
			}
			return ch, rules, nil
		}
	}
	return nil, nil, nil
}

// nftView reads iptables-nft's FORWARD as it bears on n; ch is nil when
// there is none.
func nftView(c *nftables.Conn, n Network) (Forward, *nftables.Chain, []*nftables.Rule, error) {
	fw := Forward{Policy: "ACCEPT", Jump: -1, Blocker: -1, Kind: "accept", Ours: "accept for " + n.Bridge + " (its shim)"}
	ch, rules, err := filterForward(c)
	if err != nil || ch == nil {
		return fw, nil, nil, err
	}
	if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
		fw.Policy = "DROP"
	}
	mine := comment(n.Name)
	for i, r := range rules {
		switch {
		case bytes.Equal(r.UserData, mine):
			if fw.Jump < 0 {
				fw.Jump = i
				fw.Unhook = fmt.Sprintf("nft delete rule ip filter FORWARD handle %d", r.Handle)
			}
		case fw.Blocker < 0 && nftBlocks(r.Exprs, n.Bridge):
			fw.Blocker, fw.Rule = i, fmt.Sprintf("rule handle %d of ip filter FORWARD (nft -a list chain ip filter FORWARD)", r.Handle)
		}
	}
	return fw, ch, rules, nil
}

// needed reports whether FORWARD as fw shows it would drop guests.
func (fw Forward) needed() bool { return fw.Policy == "DROP" || fw.Blocker >= 0 }

// nftBlocks reports whether a rule drops or rejects and no interface match
// of it rules bridge br out.
func nftBlocks(es []expr.Any, br string) bool {
	blocks := false
	for i, e := range es {
		switch e := e.(type) {
		case *expr.Verdict:
			blocks = blocks || e.Kind == expr.VerdictDrop
		case *expr.Reject:
			blocks = true
		case *expr.Target:
			blocks = blocks || e.Name == "REJECT" || e.Name == "DROP"
		case *expr.Meta:
			if e.Key != expr.MetaKeyIIFNAME && e.Key != expr.MetaKeyOIFNAME || i+1 >= len(es) {
				continue
			}
			if cmp, ok := es[i+1].(*expr.Cmp); ok && ifnameMatch(cmp.Data, br) != (cmp.Op == expr.CmpOpEq) {
				return false
			}
		}
	}
	return blocks
}

// ifnameMatch is nf_tables' comparison of an interface name: exact when the
// data holds the terminating NUL, else a prefix (iptables' "+").
func ifnameMatch(data []byte, name string) bool {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return string(data[:i]) == name
	}
	return strings.HasPrefix(name, string(data))
}

// shim puts n's accepts first in iptables-nft's FORWARD, in Ensure's batch,
// when that FORWARD would drop guests. It returns what to do after the batch
// for legacy iptables, or nil.
func (f *nft) shim(c *nftables.Conn, n Network, p *plan) (func() (bool, error), error) {
	fw, ch, rules, err := nftView(c, n)
	if err != nil {
		return nil, err
	}
	if ch != nil && fw.needed() {
		want := acceptRules(n, false)
		for i := len(want) - 1; i >= 0; i-- {
			r := want[i].rule(ch, n.Name)
			if !hasRule(rules, r) {
				c.InsertRule(r)
				p.changed = true
			}
		}
	}
	if !f.host.legacyFilter() {
		return nil, nil
	}
	return func() (bool, error) { return f.shimLegacy(n) }, nil
}

func hasRule(rules []*nftables.Rule, r *nftables.Rule) bool {
	fp := fingerprint(r.Exprs, r.UserData)
	return slices.ContainsFunc(rules, func(h *nftables.Rule) bool { return fingerprint(h.Exprs, h.UserData) == fp })
}

// unshim deletes n's shim rules from iptables-nft's FORWARD, in Remove's batch.
func (f *nft) unshim(c *nftables.Conn, n Network) (bool, error) {
	_, rules, err := filterForward(c)
	if err != nil {
		return false, err
	}
	changed := false
	mine := comment(n.Name)
	for _, r := range rules {
		if bytes.Equal(r.UserData, mine) {
			if err := c.DelRule(r); err != nil {
				return false, fmt.Errorf("delete rule of %s from ip filter FORWARD: %w", n.Name, err)
			}
			changed = true
		}
	}
	return changed, nil
}

// checkShim lists the shim rules FORWARD needs and lacks.
func (f *nft) checkShim(c *nftables.Conn, n Network) ([]string, error) {
	var missing []string
	fw, ch, rules, err := nftView(c, n)
	if err != nil {
		return nil, err
	}
	if ch != nil && fw.needed() {
		for _, s := range acceptRules(n, false) {
			if !hasRule(rules, s.rule(ch, n.Name)) {
				missing = append(missing, "ip filter FORWARD: "+s.text())
			}
		}
	}
	if !f.host.legacyFilter() {
		return missing, nil
	}
	lfw, err := f.legacyView(n)
	if err != nil || !lfw.needed() {
		return missing, err
	}
	for _, args := range legacyAccepts(n) {
		if ok, err := f.legacyHas(args); err != nil {
			return missing, err
		} else if !ok {
			missing = append(missing, "iptables-legacy -A FORWARD "+strings.Join(args, " "))
		}
	}
	return missing, nil
}

// Forward reads the host's filter FORWARD: iptables-nft's, and legacy's when
// iptables-nft's does not drop guests and a legacy filter table exists.
func (f *nft) Forward(n Network) (Forward, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return Forward{}, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	fw, _, _, err := nftView(c, n)
	if err != nil || fw.needed() || !f.host.legacyFilter() {
		return fw, err
	}
	return f.legacyView(n)
}

// legacyAccepts are acceptRules(n, false) as iptables arguments.
func legacyAccepts(n Network) [][]string {
	b, note := n.Bridge, []string{"-m", "comment", "--comment", "kvmnet:" + n.Name, "-j", "ACCEPT"}
	rs := [][]string{append([]string{"-i", b, "-o", b}, note...)}
	if n.Mode == NAT {
		s := n.Subnet().String()
		rs = append(rs, append([]string{"-d", s, "-o", b}, note...), append([]string{"-s", s, "-i", b}, note...))
	}
	return rs
}

// errNoLegacy: legacy FORWARD drops guests and iptables-legacy is missing.
var errNoLegacy = errors.New("legacy iptables FORWARD would drop guests, and iptables-legacy is not in PATH to add kvmnet's accepts")

// legacy runs iptables-legacy with args, --wait'ing for the xtables lock.
func (f *nft) legacy(args ...string) (string, error) {
	bin := f.host.lookPath("iptables-legacy")
	if bin == "" {
		return "", errNoLegacy
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"-w"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 && args[0] == "-C" {
		return "", errRuleAbsent
	}
	if err != nil {
		return "", fmt.Errorf("iptables-legacy %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

var errRuleAbsent = errors.New("no such rule")

// legacyHas equals `iptables-legacy -C FORWARD ARGS`.
func (f *nft) legacyHas(args []string) (bool, error) {
	_, err := f.legacy(append([]string{"-C", "FORWARD"}, args...)...)
	if errors.Is(err, errRuleAbsent) {
		return false, nil
	}
	return err == nil, err
}

// legacyView reads legacy FORWARD: `iptables-legacy -S FORWARD`.
func (f *nft) legacyView(n Network) (Forward, error) {
	fw := Forward{Policy: "ACCEPT", Jump: -1, Blocker: -1, Kind: "accept", Ours: "accept for " + n.Bridge + " (its shim in legacy iptables)"}
	out, err := f.legacy("-S", "FORWARD")
	if err != nil {
		return fw, err
	}
	i := 0
	for l := range strings.SplitSeq(out, "\n") {
		r := strings.Fields(l)
		switch {
		case len(r) == 3 && r[0] == "-P":
			fw.Policy = r[2]
			continue
		case len(r) < 2 || r[0] != "-A":
			continue
		}
		switch {
		case strings.Contains(l, "kvmnet:"+n.Name+" ") || strings.Contains(l, "kvmnet:"+n.Name+"\""):
			if fw.Jump < 0 {
				fw.Jump = i
				fw.Unhook = "iptables-legacy -D FORWARD " + strings.Join(r[2:], " ")
			}
		case fw.Blocker < 0 && legacyBlocks(r[2:], n.Bridge):
			fw.Blocker, fw.Rule = i, l
		}
		i++
	}
	return fw, nil
}

// legacyBlocks reports whether an iptables rule drops or rejects and its
// -i/-o matches do not rule bridge br out.
func legacyBlocks(r []string, br string) bool {
	j := slices.Index(r, "-j")
	if j < 0 || j+1 >= len(r) || (r[j+1] != "DROP" && r[j+1] != "REJECT") {
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
		name, want := r[i+1], strconv.Quote(br)
		match := name == br || name == want || (strings.HasSuffix(name, "+") && strings.HasPrefix(br, strings.TrimSuffix(name, "+")))
		if match == neg {
			return false
		}
	}
	return true
}

// shimLegacy inserts n's accepts first in legacy FORWARD when it would drop
// guests, as `iptables-legacy -I FORWARD 1 ...` for each that is missing.
func (f *nft) shimLegacy(n Network) (bool, error) {
	fw, err := f.legacyView(n)
	if err != nil || !fw.needed() {
		return false, err
	}
	changed := false
	want := legacyAccepts(n)
	for i := len(want) - 1; i >= 0; i-- {
		has, err := f.legacyHas(want[i])
		if err != nil {
			return changed, err
		}
		if has {
			continue
		}
		if _, err := f.legacy(append([]string{"-I", "FORWARD", "1"}, want[i]...)...); err != nil {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

// unshimLegacy deletes n's accepts from legacy FORWARD, when there is one.
func (f *nft) unshimLegacy(n Network) error {
	if !f.host.legacyFilter() || f.host.lookPath("iptables-legacy") == "" {
		return nil
	}
	for _, args := range legacyAccepts(n) {
		for {
			has, err := f.legacyHas(args)
			if err != nil || !has {
				if err != nil {
					return err
				}
				break
			}
			if _, err := f.legacy(append([]string{"-D", "FORWARD"}, args...)...); err != nil {
				return err
			}
		}
	}
	return nil
}
