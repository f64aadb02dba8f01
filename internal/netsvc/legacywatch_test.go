package netsvc

import (
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestLegacyDigest: the digest of a namespace's iptables-legacy and
// ip6tables-legacy tables is 0 with none, changes with a rule or a policy
// of either family, and stays when only counters move (traffic through an
// ACCEPT rule), so that the rule watcher heals on changes, not on traffic.
func TestLegacyDigest(t *testing.T) {
	ns := testns.New(t)
	digest := func() uint64 {
		var d uint64
		if err := ns.Do(func() error { d = legacyDigest(); return nil }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := digest(); d != 0 {
		t.Fatalf("digest %x with no legacy table, want 0", d)
	}
	last := uint64(0)
	for _, c := range []struct {
		argv    []string
		changes bool
	}{
		{[]string{"iptables-legacy", "-A", "OUTPUT", "-j", "ACCEPT"}, true},
		{[]string{"ping", "-c", "2", "-i", "0.2", "127.0.0.1"}, false},
		{[]string{"iptables-legacy", "-P", "FORWARD", "DROP"}, true},
		{[]string{"ip6tables-legacy", "-A", "OUTPUT", "-j", "ACCEPT"}, true},
		{[]string{"ping", "-6", "-c", "2", "-i", "0.2", "::1"}, false},
		{[]string{"ip6tables-legacy", "-P", "FORWARD", "DROP"}, true},
		{[]string{"ip6tables-legacy", "-D", "OUTPUT", "-j", "ACCEPT"}, true},
	} {
		ns.MustRun(c.argv...)
		d := digest()
		if (d != last) != c.changes {
			t.Errorf("%v: digest %x, before %x: want a change: %v", c.argv, d, last, c.changes)
		}
		last = d
	}
}

// TestLegacyReaderKeepsBuffers: the rule watcher's reads every second
// allocate (next to) nothing once the buffers exist, tables or not.
func TestLegacyReaderKeepsBuffers(t *testing.T) {
	ns := testns.New(t)
	ns.MustRun("iptables-legacy", "-A", "OUTPUT", "-j", "ACCEPT")
	err := ns.Do(func() error {
		var r legacyReader
		want := r.digest()
		if want == 0 || want != legacyDigest() {
			t.Errorf("digest %x, a fresh reader's %x: want the same, not 0", want, legacyDigest())
		}
		// What is left is unix.Open's copy of the path, a few bytes.
		if allocs := testing.AllocsPerRun(20, func() { r.digest() }); allocs > 4 {
			t.Errorf("digest allocates %v times a read", allocs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
