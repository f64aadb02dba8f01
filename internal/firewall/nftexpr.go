package firewall

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// spec is one nftables rule as kvmnet wants it: its expressions, its comment,
// and how `nft` prints it (for Check, doctor and error messages). The
// expressions are spelt the way nft and iptables-nft spell the same match, so
// that a rule in `ip filter` reads back in iptables-save as an iptables rule.
type spec struct {
	words []string
	exprs []expr.Any
	// inet: the rule lives in an inet table, where an IPv4 header match needs
	// `meta nfproto ipv4` first (nft adds and hides it the same way).
	inet bool
	v4   bool
	v6   bool // the IPv6 dependency is in (see ipv6)
}

func newSpec(inet bool) *spec { return &spec{inet: inet} }

// text is the rule as `nft list` prints it, comment left out.
func (s *spec) text() string { return strings.Join(s.words, " ") }

func (s *spec) add(words string, es ...expr.Any) *spec {
	s.words = append(s.words, words)
	s.exprs = append(s.exprs, es...)
	return s
}

// ifname is a name as nft compares it: the full IFNAMSIZ, zero-padded, so
// that it matches exactly (iptables-nft reads it back as `-i br0`).
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func cmpOp(neg bool) (expr.CmpOp, string) {
	if neg {
		return expr.CmpOpNeq, "!= "
	}
	return expr.CmpOpEq, ""
}

func (s *spec) iface(key expr.MetaKey, word string, name string, neg bool) *spec {
	op, not := cmpOp(neg)
	return s.add(word+" "+not+strconv.Quote(name),
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(name)})
}

// iif matches `iifname [!=] NAME`.
func (s *spec) iif(name string, neg bool) *spec {
	return s.iface(expr.MetaKeyIIFNAME, "iifname", name, neg)
}

// oif matches `oifname [!=] NAME`.
func (s *spec) oif(name string, neg bool) *spec {
	return s.iface(expr.MetaKeyOIFNAME, "oifname", name, neg)
}

// ipFamily is what the IPv4 and IPv6 header matches differ in.
type ipFamily struct {
	word    string // the header as nft names it: "ip" or "ip6"
	nfproto byte   // the inet table's dependency (see need)
	size    int    // address bytes
}

var (
	ip4 = ipFamily{word: "ip", nfproto: unix.NFPROTO_IPV4, size: 4}
	ip6 = ipFamily{word: "ip6", nfproto: unix.NFPROTO_IPV6, size: 16}
)

// bytes is a in the family's width (As4 takes an IPv4-mapped address too).
func (f ipFamily) bytes(a netip.Addr) []byte {
	if f.size == 4 {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

// need adds, once, the dependency an inet table's header match of family f
// needs: `meta nfproto ipv4|ipv6`, which nft adds and hides the same way.
func (s *spec) need(f ipFamily) {
	done := &s.v4
	if f.nfproto == unix.NFPROTO_IPV6 {
		done = &s.v6
	}
	if s.inet && !*done {
		s.exprs = append(s.exprs,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}})
		*done = true
	}
}

// ipv4 is the dependency an inet table's IPv4 header match needs.
func (s *spec) ipv4() { s.need(ip4) }

// addr matches `ip|ip6 saddr|daddr [!=] PREFIX` as nft and iptables-nft
// spell it: a load of the prefix's bytes when it ends on a byte, else of the
// whole address and a mask.
func (s *spec) addr(f ipFamily, word string, offset uint32, p netip.Prefix, neg bool) *spec {
	s.need(f)
	op, not := cmpOp(neg)
	p = p.Masked()
	n := uint32(p.Bits()) / 8
	if p.Bits()%8 != 0 {
		n = uint32(f.size)
	}
	a := f.bytes(p.Addr())
	es := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n}}
	if p.Bits()%8 != 0 {
		mask := make([]byte, n)
		for i := range mask {
			bits := min(max(p.Bits()-8*i, 0), 8)
			mask[i] = byte(0xff << (8 - bits))
		}
		es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
	}
	es = append(es, &expr.Cmp{Op: op, Register: 1, Data: a[:n]})
	text := p.String()
	if p.Bits() == 8*f.size {
		text = p.Addr().String()
	}
	return s.add(f.word+" "+word+" "+not+text, es...)
}

func (s *spec) saddr(p netip.Prefix, neg bool) *spec { return s.addr(ip4, "saddr", 12, p, neg) }
func (s *spec) daddr(p netip.Prefix, neg bool) *spec { return s.addr(ip4, "daddr", 16, p, neg) }

// proto matches `meta l4proto tcp|udp`.
func (s *spec) proto(p byte) *spec {
	return s.add("meta l4proto "+protoName(p),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}})
}

// dport matches `tcp|udp dport PORT`.
func (s *spec) dport(p byte, port uint16) *spec {
	return s.add(protoName(p)+" dport "+strconv.Itoa(int(port)),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)})
}

func protoName(p byte) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// ctFlags matches a conntrack flag word as nft spells `ct state|status
// FLAGS`: any of bits set, or with none, none of them.
func (s *spec) ctFlags(key expr.CtKey, words string, bits uint32, none bool) *spec {
	op := expr.CmpOpNeq
	if none {
		op = expr.CmpOpEq
	}
	return s.add(words,
		&expr.Ct{Key: key, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)})
}

// established matches `ct state established,related`.
func (s *spec) established() *spec {
	return s.ctFlags(expr.CtKeySTATE, "ct state established,related", expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, false)
}

func (s *spec) verdict(word string, k expr.VerdictKind) *spec {
	return s.add(word, &expr.Verdict{Kind: k})
}

func (s *spec) accept() *spec { return s.verdict("accept", expr.VerdictAccept) }
func (s *spec) drop() *spec   { return s.verdict("drop", expr.VerdictDrop) }
func (s *spec) ret() *spec    { return s.verdict("return", expr.VerdictReturn) }

func (s *spec) jump(chain string) *spec {
	return s.add("jump "+chain, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

// reject is `reject`, which nft prints for the inet family's default: an
// ICMP (or ICMPv6) port unreachable, as iptables' REJECT sends.
func (s *spec) reject() *spec {
	return s.add("reject", &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
}

// masquerade is `masquerade`, or with ports `masquerade to :1024-65535`.
func (s *spec) masquerade(ports bool) *spec {
	if !ports {
		return s.add("masquerade", &expr.Masq{})
	}
	return s.add("masquerade to :1024-65535",
		&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, 1024)},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, 65535)},
		&expr.Masq{ToPorts: true, RegProtoMin: 1, RegProtoMax: 2})
}

// comment is the rule's userdata: `comment "kvmnet:NAME"`, which
// iptables-nft shows as `-m comment --comment "kvmnet:NAME"`.
func comment(network string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, "kvmnet:"+network)
}

// rule makes s a rule of chain c carrying network's comment.
func (s *spec) rule(c *nftables.Chain, network string) *nftables.Rule {
	return &nftables.Rule{Table: c.Table, Chain: c, Exprs: s.exprs, UserData: comment(network)}
}
