package firewall

import (
	"strings"
	"testing"

	"github.com/google/nftables/expr"

	"github.com/kvmnet/kvmnet/internal/nat"
)

// TestBlocks: a DROP or REJECT counts against a bridge unless an interface
// match rules the bridge out, in nf_tables rules and in iptables' alike.
func TestBlocks(t *testing.T) {
	meta := func(k expr.MetaKey, op expr.CmpOp, name string, full bool) []expr.Any {
		data := []byte(name)
		if full {
			data = ifname(name)
		}
		return []expr.Any{&expr.Meta{Key: k, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: data}}
	}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	for _, tc := range []struct {
		name string
		es   []expr.Any
		want bool
	}{
		{"drop all", []expr.Any{drop}, true},
		{"iptables-nft REJECT", []expr.Any{&expr.Target{Name: "REJECT"}}, true},
		{"accept", []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}, false},
		{"drop on docker0", append(meta(expr.MetaKeyIIFNAME, expr.CmpOpEq, "docker0", true), drop), false},
		{"drop on br0", append(meta(expr.MetaKeyOIFNAME, expr.CmpOpEq, "br0", true), drop), true},
		{"drop on br+", append(meta(expr.MetaKeyIIFNAME, expr.CmpOpEq, "br", false), drop), true},
		{"drop not on br0", append(meta(expr.MetaKeyIIFNAME, expr.CmpOpNeq, "br0", true), drop), false},
	} {
		if got := nftBlocks(tc.es, "br0"); got != tc.want {
			t.Errorf("nft %s: blocks = %t, want %t", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		rule string
		want bool
	}{
		{"-j DROP", true},
		{"-i docker0 -j DROP", false},
		{"-i br+ -j DROP", true},
		{"! -o br0 -j REJECT --reject-with icmp-host-prohibited", false},
		{"-o br0 -j REJECT", true},
		{"-j DOCKER-USER", false},
	} {
		if got := nat.Blocks(strings.Fields(tc.rule), "br0"); got != tc.want {
			t.Errorf("iptables %q: blocks = %t, want %t", tc.rule, got, tc.want)
		}
	}
}
