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

	"github.com/kvmnet/kvmnet/internal/nat"
)

// The shim. A verdict of kvmnet's table is not the last word: a packet it
// accepts goes on to every other base chain on the hook, and iptables'
// FORWARD (Docker, ufw and firewalld's iptables backend leave its policy
// DROP), its INPUT (ufw: DROP), or a forward or input chain of another
// nftables table (a hand-written `inet filter` with policy drop) drops it
// there. No table can overrule another's drop, so when such a chain would
// drop guests, kvmnet puts its accept rules (acceptRules and allowRules
// without conntrack matches; serviceRules), commented kvmnet:NAME, first in
// that chain too. In forward they let by only what kvmnet's own chains
// accepted: its guards, which run at priority filter - 1 and so before
// iptables' chains, rejected the rest (and against a chain that runs even
// earlier, an accept there only ends that chain: kvmnet's still rejects). In
// input they accept DHCP and DNS on the gateway, nothing else of the host.
//
// nf_tables chains (iptables-nft's among them) are written over netlink in
// Ensure's batch. Legacy's are out of netlink's reach, so only there kvmnet
// execs iptables-legacy; without it installed it leaves them be, and doctor's
// FORWARD check says what is wrong.

// foreign is another table's filter base chain on a hook kvmnet uses.
type foreign struct {
	ch    *nftables.Chain
	rules []*nftables.Rule
}

// label names the chain as nft does: `ip filter FORWARD`.
func (f foreign) label() string {
	fam := "ip"
	switch f.ch.Table.Family {
	case nftables.TableFamilyINet:
		fam = "inet"
	case nftables.TableFamilyIPv6:
		fam = "ip6"
	}
	return fam + " " + f.ch.Table.Name + " " + f.ch.Name
}

// foreignChains lists the filter base chains on hook h of every ip and inet
// table but kvmnet's, with their rules: `nft list ruleset`, read for them.
//
// With v6, ip6 tables' chains count too (ip6tables-nft's FORWARD and INPUT):
// a network with an IPv6 prefix needs its IPv6 let through there.
func foreignChains(r *reader, h *nftables.ChainHook, v6 bool) ([]foreign, error) {
	chains, err := r.allChains()
	if err != nil {
		return nil, err
	}
	var fs []foreign
	for _, ch := range chains {
		fam := ch.Table.Family
		if ch.Hooknum == nil || *ch.Hooknum != *h || ch.Type != nftables.ChainTypeFilter ||
			(fam != nftables.TableFamilyIPv4 && fam != nftables.TableFamilyINet && (!v6 || fam != nftables.TableFamilyIPv6)) ||
			(fam == nftables.TableFamilyINet && ch.Table.Name == tableName) {
			continue
		}
		rules, err := r.c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("list chain %s: %w", foreign{ch: ch}.label(), err)
		}
		fs = append(fs, foreign{ch, rules})
	}
	return fs, nil
}

// nftView reads chain f as it bears on n.
func nftView(f foreign, n Network) Forward {
	fw := Forward{Policy: "ACCEPT", Jump: -1, Blocker: -1, Kind: "accept", Ours: "accept for " + n.Bridge + " (its shim in " + f.label() + ")"}
	if f.ch.Policy != nil && *f.ch.Policy == nftables.ChainPolicyDrop {
		fw.Policy = "DROP"
	}
	mine := comment(n.Name)
	for i, r := range f.rules {
		switch {
		case bytes.Equal(r.UserData, mine):
			if fw.Jump < 0 {
				fw.Jump = i
				fw.Unhook = fmt.Sprintf("nft delete rule %s handle %d", f.label(), r.Handle)
			}
		case fw.Blocker < 0 && nftBlocks(r.Exprs, n.Bridge):
			fw.Blocker, fw.Rule = i, fmt.Sprintf("rule handle %d of %s (nft -a list chain %s)", r.Handle, f.label(), f.label())
		}
	}
	return fw
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

// hook is a hook whose other chains may stand between guests and what
// kvmnet's own chains accepted: forward (routed and bridged traffic) and
// input (DHCP and DNS on the gateway, under an INPUT DROP as ufw sets). chain
// is iptables' name for it.
type hook struct {
	chain  string
	nf     *nftables.ChainHook
	nft    func(n Network, inet bool) []*spec // the shim as nf_tables rules (IPv6's too in an inet table)
	nft6   func(n Network) []*spec            // the shim in an ip6 table: a network's IPv6 only
	legacy func(Network) [][]string           // the same as iptables arguments
}

func hooks() []hook {
	return []hook{
		{"FORWARD", nftables.ChainHookForward, func(n Network, inet bool) []*spec {
			return append(allowRules(n, inet, false), acceptRules(n, inet, false)...)
		}, func(n Network) []*spec {
			if !n.Gateway6.IsValid() {
				return nil
			}
			rs := append(allowRules(n, false, false), newSpec(false).iif(n.Bridge, false).oif(n.Bridge, false).accept())
			return append(rs, natAccepts6(n, false, false)...)
		}, legacyAccepts},
		{"INPUT", nftables.ChainHookInput, func(n Network, inet bool) []*spec {
			rs := serviceRules(n, inet)
			if inet {
				rs = append(rs, inputAccepts6(n, true)...)
			}
			return rs
		}, func(n Network) []*spec { return inputAccepts6(n, false) }, legacyServices},
	}
}

// serviceRules are the accepts of inputRules that a host's INPUT policy
// must not undo: DHCP, and DNS on the gateway.
func serviceRules(n Network, inet bool) []*spec {
	if n.Mode == Isolated || !n.Services {
		return nil
	}
	b, gw := n.Bridge, netip.PrefixFrom(n.Gateway.Addr(), 32)
	return []*spec{
		newSpec(inet).iif(b, false).dport(unix.IPPROTO_UDP, 67).accept(),
		newSpec(inet).iif(b, false).daddr(gw, false).dport(unix.IPPROTO_UDP, 53).accept(),
		newSpec(inet).iif(b, false).daddr(gw, false).dport(unix.IPPROTO_TCP, 53).accept(),
	}
}

// shim puts n's accepts first in every other table's forward and input
// chain that would drop guests, in Ensure's batch. It returns what to do
// after the batch for legacy iptables, or nil.
//
//	nft insert rule ip filter FORWARD iifname "br0" oifname "br0" accept comment "kvmnet:NAME"
func (f *nft) shim(r *reader, n Network, p *plan) (func() (bool, error), error) {
	err := shimsWanted(r, n, func(fc foreign, want []*spec) {
		for i := len(want) - 1; i >= 0; i-- {
			rule := want[i].rule(fc.ch, n.Name)
			if !hasRule(fc.rules, rule) {
				p.c.InsertRule(rule)
				p.changed = true
			}
		}
	})
	if err != nil || !f.host.legacyFilter() {
		return nil, err
	}
	return func() (bool, error) { return f.shimLegacy(n) }, nil
}

// shimsWanted calls f with each other table's forward or input chain that
// would drop n's guests and the shim rules n wants there, in order.
func shimsWanted(r *reader, n Network, f func(fc foreign, want []*spec)) error {
	for _, h := range hooks() {
		fcs, err := foreignChains(r, h.nf, n.Gateway6.IsValid())
		if err != nil {
			return err
		}
		for _, fc := range fcs {
			if nftView(fc, n).needed() {
				f(fc, shimRules(h, n, fc))
			}
		}
	}
	return nil
}

func hasRule(rules []*nftables.Rule, r *nftables.Rule) bool {
	fp := fingerprint(r.Exprs, r.UserData)
	return slices.ContainsFunc(rules, func(h *nftables.Rule) bool { return fingerprint(h.Exprs, h.UserData) == fp })
}

// unshim deletes n's shim rules from every other table's forward and input
// chains, in Remove's batch.
//
//	nft delete rule ip filter FORWARD handle H
func (f *nft) unshim(r *reader, n Network) (bool, error) {
	changed := false
	mine := comment(n.Name)
	for _, h := range hooks() {
		fcs, err := foreignChains(r, h.nf, true)
		if err != nil {
			return false, err
		}
		for _, fc := range fcs {
			for _, rule := range fc.rules {
				if !bytes.Equal(rule.UserData, mine) {
					continue
				}
				if err := r.c.DelRule(rule); err != nil {
					return false, fmt.Errorf("delete rule of %s from %s: %w", n.Name, fc.label(), err)
				}
				changed = true
			}
		}
	}
	return changed, nil
}

// checkShim lists the shim rules other tables' chains need and lack.
func (f *nft) checkShim(r *reader, n Network) ([]string, error) {
	var missing []string
	err := shimsWanted(r, n, func(fc foreign, want []*spec) {
		for _, s := range want {
			if !hasRule(fc.rules, s.rule(fc.ch, n.Name)) {
				missing = append(missing, fc.label()+": "+s.text())
			}
		}
	})
	if err != nil {
		return nil, err
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

// Forward reads what stands in forwarded traffic's way: the first other
// table's forward chain that would drop guests (iptables-nft's FORWARD
// first), else legacy iptables' FORWARD when a legacy filter table exists,
// else iptables-nft's FORWARD as it is.
func (f *nft) Forward(n Network) (Forward, error) {
	r, closeConn, err := lasting()
	if err != nil {
		return Forward{}, err
	}
	defer closeConn()
	fcs, err := foreignChains(r, nftables.ChainHookForward, n.Gateway6.IsValid())
	if err != nil {
		return Forward{}, err
	}
	slices.SortStableFunc(fcs, func(a, b foreign) int {
		return cmpBool(a.label() != "ip filter FORWARD", b.label() != "ip filter FORWARD")
	})
	for _, fc := range fcs {
		if fw := nftView(fc, n); fw.needed() {
			return fw, nil
		}
	}
	if f.host.legacyFilter() {
		return f.legacyView(n, "FORWARD")
	}
	if len(fcs) > 0 {
		return nftView(fcs[0], n), nil
	}
	return Forward{Policy: "ACCEPT", Jump: -1, Blocker: -1, Kind: "accept", Ours: "accept for " + n.Bridge}, nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
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
	if n.Mode == NAT || n.Mode == Routed {
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
var errNoLegacy = errors.New("legacy iptables would drop guests, and iptables-legacy is not installed to add kvmnet's accepts")

// errRuleAbsent is `iptables -C`'s exit status 1.
var errRuleAbsent = errors.New("no such rule")

// legacy runs iptables-legacy with args, --wait'ing for the xtables lock.
func (f *nft) legacy(args ...string) (string, error) {
	bin := f.host.lookPath("iptables-legacy")
	if bin == "" {
		return "", errNoLegacy
	}
	var out, stderr bytes.Buffer
	cmd := nat.Command(bin, append([]string{"-w"}, args...)...)
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

// shimOwner names the network whose shim accept legacy rule r is: one that
// carries its comment and accepts. The iptables backend's jumps into its
// KVMNET-* chains carry the comment too, but are never a shim's.
func shimOwner(r []string) (string, bool) {
	i := slices.Index(r, "--comment")
	if i < 0 || i+1 >= len(r) || !slices.Equal(r[len(r)-2:], []string{"-j", "ACCEPT"}) {
		return "", false
	}
	n, ok := strings.CutPrefix(r[i+1], "kvmnet:")
	return n, ok && nat.CheckName(n) == nil
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
		case fw.Blocker < 0 && nat.Blocks(r, n.Bridge):
			fw.Blocker, fw.Rule = i, "-A "+chain+" "+strings.Join(r, " ")
		}
	}
	return fw, nil
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

// unshimLegacy deletes every shim accept of n's from legacy FORWARD and
// INPUT: `iptables-legacy -D CHAIN ...` for each that carries its comment.
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
			if owner, ok := shimOwner(r); !ok || owner != n.Name {
				continue // not a shim accept: an iptables backend's jump is its own
			}
			if _, err := f.legacy(append([]string{"-D", h.chain}, r...)...); err != nil {
				return err
			}
		}
	}
	return nil
}
