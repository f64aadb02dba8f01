package nfgen

import (
	"errors"
	"runtime"
	"testing"

	"github.com/google/nftables"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// Keep the main goroutine on the main thread: testns.NS.Do locks a
// goroutine into a namespace.
func init() { runtime.LockOSThread() }

// TestFollow: in a namespace of its own (its own generation counter), Follow
// proves a transaction the only one since the generation it was given, and
// proves nothing when another transaction landed before or between, when
// nothing was committed (even while another program committed one: its
// generation is from+1 too), or when the given generation is stale or
// unknown.
func TestFollow(t *testing.T) {
	ns := testns.New(t)
	err := ns.Do(func() error {
		tx := func(name string) func() (bool, error) {
			return func() (bool, error) {
				c, err := nftables.New()
				if err != nil {
					return false, err
				}
				c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
				return true, c.Flush()
			}
		}
		gen := func() uint32 {
			g, err := Generation()
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		g := gen()
		to, ok, err := Follow(g, tx("ours"))
		if err != nil || !ok || to != g+1 || gen() != g+1 {
			t.Errorf("our transaction alone: Follow(%d) = %d, %v, %v; now %d, want %d, true", g, to, ok, err, gen(), g+1)
		}
		g = gen()
		if to, ok, err := Follow(g, func() (bool, error) { _, _ = tx("stranger")(); return tx("ours2")() }); err != nil || ok {
			t.Errorf("another program's transaction between: Follow = %d, %v, %v, want not ok", to, ok, err)
		}
		g = gen()
		_, _ = tx("stranger2")()
		if to, ok, err := Follow(g, tx("ours3")); err != nil || ok {
			t.Errorf("another program's transaction before: Follow = %d, %v, %v, want not ok", to, ok, err)
		}
		if to, ok, err := Follow(gen(), func() (bool, error) { return false, nil }); err != nil || ok {
			t.Errorf("nothing committed: Follow = %d, %v, %v, want not ok", to, ok, err)
		}
		// A Forget with no port gone, or a Lease with no guard table, while
		// `nft flush ruleset` commits: the generation moves by exactly one,
		// but not by ours, and the rules it leaves are not whole.
		g = gen()
		if to, ok, err := Follow(g, func() (bool, error) { _, _ = tx("flush")(); return false, nil }); err != nil || ok || gen() != g+1 {
			t.Errorf("nothing committed while another program committed: Follow(%d) = %d, %v, %v; now %d, want not ok", g, to, ok, err, gen())
		}
		if _, ok, _ := Follow(0, tx("ours4")); ok {
			t.Error("an unknown generation proved something")
		}
		boom := errors.New("boom")
		if _, ok, err := Follow(gen(), func() (bool, error) { return false, boom }); !errors.Is(err, boom) || ok {
			t.Errorf("a failed commit: ok %v, err %v, want its error", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
