package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The shim. A verdict of kvmnet's table is not the last word: a packet it
// accepts goes on to every other base chain on the hook, and iptables'
// FORWARD (Docker, ufw and firewalld's iptables backend leave its policy
// DROP) or INPUT (ufw: DROP) drops it there. No table can overrule another's
// drop, so when the host's filter FORWARD or INPUT would drop guests, kvmnet
// puts its accept rules (acceptRules with inet false; serviceRules),
// commented kvmnet:NAME, first in that chain too. In FORWARD they let by
// only what kvmnet's own chains accepted: its guards ran before them
// (priority filter - 1) and rejected the rest. In INPUT they accept DHCP and
// DNS on the gateway, nothing else of the host.
//
// iptables-nft's chains are nf_tables chains, written over netlink in
// Ensure's batch. Legacy's are out of netlink's reach, so only there kvmnet
// execs iptables-legacy; without it in PATH it leaves them be, and doctor's
// FORWARD check says what is wrong.

// filterChain finds iptables-nft's `ip filter CHAIN` and its rules, nil when none.
func filterChain(c *nftables.Conn, name string) (*nftables.Chain, []*nftables.Rule, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, nil, fmt.Errorf("list ip chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == "filter" && ch.Name == name {
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				return nil, nil, fmt.Errorf("list chain ip filter %s: %w", name, err)
			}
			return ch, rules, nil
		}
	}
	return nil, nil, nil
}

// nftView reads iptables-nft's CHAIN as it bears on n; ch is nil when there
// is none.
func nftView(c *nftables.Conn, n Network, chain string) (Forward, *nftables.Chain, []*nftables.Rule, error) {
	fw := Forward{Policy: "ACCEPT", Jump: -1, Blocker: -1, Kind: "accept", Ours: "accept for " + n.Bridge + " (its shim)"}
	ch, rules, err := filterChain(c, chain)
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
				fw.Unhook = fmt.Sprintf("nft delete rule ip filter %s handle %d", chain, r.Handle)
			}
		case fw.Blocker < 0 && nftBlocks(r.Exprs, n.Bridge):
			fw.Blocker, fw.Rule = i, fmt.Sprintf("rule handle %d of ip filter %s (nft -a list chain ip filter %s)", r.Handle, chain, chain)
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

// hook is one of iptables' filter chains that may stand between guests and
// what kvmnet's own chains accepted: FORWARD (routed and bridged traffic)
// and INPUT (DHCP and DNS on the gateway, under an INPUT DROP as ufw sets).
type hook struct {
	chain  string
	nft    func(Network) []*spec    // the shim as nf_tables rules of family ip
	legacy func(Network) [][]string // the same as iptables arguments
}

func hooks() []hook {
	return []hook{
		{"FORWARD", func(n Network) []*spec { return append(allowRules(n, false), acceptRules(n, false)...) }, legacyAccepts},
		{"INPUT", serviceRules, legacyServices},
	}
}

// serviceRules are the accepts of inputRules that a host's INPUT policy
// must not undo: DHCP, and DNS on the gateway.
func serviceRules(n Network) []*spec {
	if n.Mode == Isolated || !n.Services {
		return nil
	}
	b, gw := n.Bridge, netip.PrefixFrom(n.Gateway.Addr(), 32)
	return []*spec{
		newSpec(false).iif(b, false).dport(unix.IPPROTO_UDP, 67).accept(),
		newSpec(false).iif(b, false).daddr(gw, false).dport(unix.IPPROTO_UDP, 53).accept(),
		newSpec(false).iif(b, false).daddr(gw, false).dport(unix.IPPROTO_TCP, 53).accept(),
	}
}

// shim puts n's accepts first in iptables-nft's FORWARD and INPUT, in
// Ensure's batch, where those would drop guests. It returns what to do after
// the batch for legacy iptables, or nil.
func (f *nft) shim(c *nftables.Conn, n Network, p *plan) (func() (bool, error), error) {
	for _, h := range hooks() {
		fw, ch, rules, err := nftView(c, n, h.chain)
		if err != nil {
			return nil, err
		}
		if ch == nil || !fw.needed() {
			continue
		}
		want := h.nft(n)
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

// unshim deletes n's shim rules from iptables-nft's chains, in Remove's batch.
func (f *nft) unshim(c *nftables.Conn, n Network) (bool, error) {
	changed := false
	mine := comment(n.Name)
	for _, h := range hooks() {
		_, rules, err := filterChain(c, h.chain)
		if err != nil {
			return false, err
		}
		for _, r := range rules {
			if bytes.Equal(r.UserData, mine) {
				if err := c.DelRule(r); err != nil {
					return false, fmt.Errorf("delete rule of %s from ip filter %s: %w", n.Name, h.chain, err)
				}
				changed = true
			}
		}
	}
	return changed, nil
}

// checkShim lists the shim rules the host's chains need and lack.
func (f *nft) checkShim(c *nftables.Conn, n Network) ([]string, error) {
	var missing []string
	for _, h := range hooks() {
		fw, ch, rules, err := nftView(c, n, h.chain)
		if err != nil {
			return nil, err
		}
		if ch == nil || !fw.needed() {
			continue
		}
		for _, s := range h.nft(n) {
			if !hasRule(rules, s.rule(ch, n.Name)) {
				missing = append(missing, "ip filter "+h.chain+": "+s.text())
			}
		}
	}
	if !f.host.legacyFilter() {
		return missing, nil
	}
	for _, h := range hooks() {
		lfw, err := f.legacyView(n, h.chain)
		if err != nil {
			return missing, err
		}
		if !lfw.needed() {
			continue
		}
		for _, args := range h.legacy(n) {
			if ok, err := f.legacyHas(h.chain, args); err != nil {
				return missing, err
			} else if !ok {
				missing = append(missing, "iptables-legacy -A "+h.chain+" "+strings.Join(args, " "))
			}
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
	fw, _, _, err := nftView(c, n, "FORWARD")
	if err != nil || fw.needed() || !f.host.legacyFilter() {
		return fw, err
	}
	return f.legacyView(n, "FORWARD")
}

// legacyAccepts are allowRules(n, false) and acceptRules(n, false) as
// iptables arguments.
func legacyAccepts(n Network) [][]string {
	b, note := n.Bridge, []string{"-m", "comment", "--comment", "kvmnet:" + n.Name, "-j", "ACCEPT"}
	var rs [][]string
	for _, from := range n.AllowFrom {
		rs = append(rs, append([]string{"-i", from, "-o", b}, note...), append([]string{"-i", b, "-o", from}, note...))
	}
	rs = append(rs, append([]string{"-i", b, "-o", b}, note...))
	if n.Mode == NAT {
		s := n.Subnet().String()
		rs = append(rs, append([]string{"-d", s, "-o", b}, note...), append([]string{"-s", s, "-i", b}, note...))
	}
	return rs
}

// legacyServices are serviceRules(n) as iptables arguments.
func legacyServices(n Network) [][]string {
	if n.Mode == Isolated || !n.Services {
		return nil
	}
	b, gw, note := n.Bridge, n.Gateway.Addr().String()+"/32", []string{"-m", "comment", "--comment", "kvmnet:" + n.Name, "-j", "ACCEPT"}
	return [][]string{
		append([]string{"-i", b, "-p", "udp", "-m", "udp", "--dport", "67"}, note...),
		append([]string{"-d", gw, "-i", b, "-p", "udp", "-m", "udp", "--dport", "53"}, note...),
		append([]string{"-d", gw, "-i", b, "-p", "tcp", "-m", "tcp", "--dport", "53"}, note...),
	}
}

// errNoLegacy: legacy iptables would drop guests and iptables-legacy is missing.
var errNoLegacy = errors.New("legacy iptables would drop guests, and iptables-legacy is not in PATH to add kvmnet's accepts")

// errRuleAbsent is `iptables -C`'s exit status 1.
var errRuleAbsent = errors.New("no such rule")

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

// legacyHas equals `iptables-legacy -C CHAIN ARGS`.
func (f *nft) legacyHas(chain string, args []string) (bool, error) {
	_, err := f.legacy(append([]string{"-C", chain}, args...)...)
	if errors.Is(err, errRuleAbsent) {
		return false, nil
	}
	return err == nil, err
}

// legacyRules reads legacy CHAIN: `iptables-legacy -S CHAIN`, each rule's
// arguments after `-A CHAIN`, unquoted (kvmnet's comments hold no space).
func (f *nft) legacyRules(chain string) (policy string, rules [][]string, err error) {
	out, err := f.legacy("-S", chain)
	if err != nil {
		return "", nil, err
	}
	for l := range strings.SplitSeq(out, "\n") {
		r := strings.Fields(l)
		switch {
		case len(r) == 3 && r[0] == "-P":
			policy = r[2]
		case len(r) > 2 && r[0] == "-A":
			for i := range r {
				r[i] = strings.Trim(r[i], `"`)
			}
			rules = append(rules, r[2:])
		}
	}
	return policy, rules, nil
}

// ours reports whether legacy rule r carries network's comment.
func ours(r []string, network string) bool {
	i := slices.Index(r, "--comment")
	return i >= 0 && i+1 < len(r) && r[i+1] == "kvmnet:"+network
}

// legacyView reads legacy CHAIN as it bears on n.
func (f *nft) legacyView(n Network, chain string) (Forward, error) {
	fw := Forward{Policy: "ACCEPT", Jump: -1, Blocker: -1, Kind: "accept", Ours: "accept for " + n.Bridge + " (its shim in legacy iptables)"}
	policy, rules, err := f.legacyRules(chain)
	if err != nil {
		return fw, err
	}
	if policy != "" {
		fw.Policy = policy
	}
	for i, r := range rules {
		switch {
		case ours(r, n.Name):
			if fw.Jump < 0 {
				fw.Jump = i
				fw.Unhook = "iptables-legacy -D " + chain + " " + strings.Join(r, " ")
			}
		case fw.Blocker < 0 && legacyBlocks(r, n.Bridge):
			fw.Blocker, fw.Rule = i, "-A "+chain+" "+strings.Join(r, " ")
		}
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
		name := r[i+1]
		match := name == br || (strings.HasSuffix(name, "+") && strings.HasPrefix(br, strings.TrimSuffix(name, "+")))
		if match == neg {
			return false
		}
	}
	return true
}

// shimLegacy inserts n's accepts first in legacy FORWARD and INPUT where
// those would drop guests: `iptables-legacy -I CHAIN 1 ...` for each missing.
func (f *nft) shimLegacy(n Network) (bool, error) {
	if f.host.lookPath("iptables-legacy") == "" {
		return false, nil
	}
	changed := false
	for _, h := range hooks() {
		want := h.legacy(n)
		if len(want) == 0 {
			continue
		}
		fw, err := f.legacyView(n, h.chain)
		if err != nil || !fw.needed() {
			if err != nil {
				return changed, err
			}
			continue
		}
		for i := len(want) - 1; i >= 0; i-- {
			has, err := f.legacyHas(h.chain, want[i])
			if err != nil {
				return changed, err
			}
			if has {
				continue
			}
			if _, err := f.legacy(append([]string{"-I", h.chain, "1"}, want[i]...)...); err != nil {
				return changed, err
			}
			changed = true
		}
	}
	return changed, nil
}

// unshimLegacy deletes every rule of n's from legacy FORWARD and INPUT:
// `iptables-legacy -D CHAIN ...` for each that carries its comment.
func (f *nft) unshimLegacy(n Network) error {
	if !f.host.legacyFilter() || f.host.lookPath("iptables-legacy") == "" {
		return nil
	}
	for _, h := range hooks() {
		_, rules, err := f.legacyRules(h.chain)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if !ours(r, n.Name) {
				continue
			}
			if _, err := f.legacy(append([]string{"-D", h.chain}, r...)...); err != nil {
				return err
			}
		}
	}
	return nil
}
