package operator

import (
	"strings"
	"testing"
)

// TestOrphanTableAndLegacyShim: what no record accounts for and no network
// chain names is still kvmnet's when kvmnet's own names say so. An empty
// inet kvmnet, and shim accepts commented kvmnet:NAME in legacy iptables'
// FORWARD and INPUT of a network that is not up, are reported by doctor and
// removed by gc; another program's table and rules, a comment like kvmnet's
// included, stay.
func TestOrphanTableAndLegacyShim(t *testing.T) {
	h := newHostFW(t, "nftables", "")
	doctor := func() (string, int) {
		out, e, code := h.kvmnet(nil, "doctor")
		return out + e, code
	}

	h.MustRun("nft", "add", "table", "inet", "kvmnet")
	h.MustRun("nft", "add", "table", "inet", "other")
	want := "problem: kvmnet's nftables table inet kvmnet is left empty"
	if out, code := doctor(); code != 1 || !strings.Contains(out, want) {
		t.Errorf("doctor with an empty inet kvmnet: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	if _, e, code := h.kvmnet(nil, "gc"); code != 0 || !strings.Contains(e, "remove empty nftables table inet kvmnet") {
		t.Errorf("gc: exit %d\n%s", code, e)
	}
	if tables := h.MustRun("nft", "list", "tables"); strings.Contains(tables, "inet kvmnet") || !strings.Contains(tables, "inet other") {
		t.Errorf("after gc, want inet kvmnet gone and inet other kept:\n%s", tables)
	}

	note := []string{"-m", "comment", "--comment"}
	legacy := func(args ...string) { h.MustRun(append([]string{"iptables-legacy", "-w"}, args...)...) }
	legacy(append(append([]string{"-I", "FORWARD", "1", "-i", "br7", "-o", "br7"}, note...), "kvmnet:ghost", "-j", "ACCEPT")...)
	legacy(append(append([]string{"-I", "INPUT", "1", "-i", "br7", "-p", "udp", "--dport", "67"}, note...), "kvmnet:ghost", "-j", "ACCEPT")...)
	legacy(append(append([]string{"-A", "FORWARD", "-i", "br7"}, note...), "other:ghost", "-j", "ACCEPT")...)
	legacy(append(append([]string{"-A", "INPUT", "-i", "br7"}, note...), "kvmnet:ghost", "-j", "LOG")...)
	want = "problem: network ghost: kvmnet's nftables rules of a network that is not up are left over"
	if out, code := doctor(); code != 1 || !strings.Contains(out, want) {
		t.Errorf("doctor with ghost's shim accepts in legacy iptables: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	if _, e, code := h.kvmnet(nil, "gc"); code != 0 || !strings.Contains(e, "remove left-over nftables rules of ghost") {
		t.Errorf("gc: exit %d\n%s", code, e)
	}
	got := h.MustRun("iptables-legacy", "-w", "-S")
	for _, gone := range []string{`-A FORWARD -i br7 -o br7 -m comment --comment "kvmnet:ghost" -j ACCEPT`, `--dport 67 -m comment --comment "kvmnet:ghost" -j ACCEPT`} {
		if strings.Contains(got, gone) {
			t.Errorf("after gc, legacy iptables still has %s:\n%s", gone, got)
		}
	}
	for _, kept := range []string{`--comment "other:ghost" -j ACCEPT`, `--comment "kvmnet:ghost" -j LOG`} {
		if !strings.Contains(got, kept) {
			t.Errorf("gc removed a rule that is no shim accept of kvmnet's, %s:\n%s", kept, got)
		}
	}
	if out, code := doctor(); code != 0 || !strings.HasPrefix(out, "healthy") {
		t.Errorf("doctor after gc: exit %d\n%s", code, out)
	}
}
