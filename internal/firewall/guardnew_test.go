package firewall

import (
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestGuardNew: Ensure says GuardNew only when it made the guard table,
// whose learned sets are then empty (the up skips forgetting ports on it):
// not when the table was there, even with a chain to repair; again once
// the table is gone. The iptables backend, whose guard is a batch of its
// own, says the same.
func TestGuardNew(t *testing.T) {
	for _, b := range []Backend{NFTables, IPTables} {
		t.Run(string(b), func(t *testing.T) {
			ns := testns.New(t)
			n := guardFixtures[0].n
			ensureIn := func() Result {
				t.Helper()
				var r Result
				if err := ns.Do(func() error {
					fw, err := New(b)
					if err == nil {
						r, err = fw.Ensure(n)
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return r
			}
			if r := ensureIn(); !r.Changed || !r.GuardNew {
				t.Fatalf("first Ensure: %+v, want changed and the guard new", r)
			}
			if r := ensureIn(); r.GuardNew {
				t.Errorf("second Ensure: %+v, want the guard not new", r)
			}
			ns.MustRun("nft", "flush", "chain", "bridge", "kvmnet-"+n.Name, "guests")
			if r := ensureIn(); !r.Changed || r.GuardNew {
				t.Errorf("Ensure after a flush: %+v, want changed, the guard not new", r)
			}
			ns.MustRun("nft", "delete", "table", "bridge", "kvmnet-"+n.Name)
			if r := ensureIn(); !r.Changed || !r.GuardNew {
				t.Errorf("Ensure after the table's deletion: %+v, want changed and the guard new", r)
			}
		})
	}
}
