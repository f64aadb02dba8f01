package nat

// The benchmarks run inside a throwaway namespace holding Docker's and
// libvirt's rules besides kvmnet's. Run them as root:
//
//	go test ./internal/nat -run '^$' -bench . -benchtime 200x
//
// Besides ns/op each reports median-ms, the median of one call, which is
// steadier than the mean on a busy machine.

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// bench times op b.N times in a namespace, running setup untimed before each.
func bench(b *testing.B, setup, op func(fw *Firewall) error) {
	ns := testns.New(b)
	foreign(b, ns)
	do(b, ns, func(fw *Firewall) error {
		laps := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			if err := setup(fw); err != nil {
				return err
			}
			b.StartTimer()
			t0 := time.Now()
			if err := op(fw); err != nil {
				return err
			}
			laps = append(laps, time.Since(t0))
		}
		b.StopTimer()
		slices.Sort(laps)
		b.ReportMetric(float64(laps[len(laps)/2].Microseconds())/1000, "median-ms")
		return nil
	})
}

// benchNets runs bench for a NAT network with services (nat and filter
// tables) and a host-only one (filter only), because a batch that deletes
// costs one kernel RCU grace period per table it commits (see Remove).
func benchNets(b *testing.B, setup, op func(n Network) func(fw *Firewall) error) {
	for _, n := range []Network{netA, netB} {
		b.Run(n.Mode.String(), func(b *testing.B) { bench(b, setup(n), op(n)) })
	}
}

func ensureOp(n Network) func(fw *Firewall) error {
	return func(fw *Firewall) error { _, err := fw.Ensure(n); return err }
}

func removeOp(n Network) func(fw *Firewall) error {
	return func(fw *Firewall) error { return fw.Remove(n) }
}

// BenchmarkEnsureCold: a network's first VM; one save and one restore.
func BenchmarkEnsureCold(b *testing.B) { benchNets(b, removeOp, ensureOp) }

// BenchmarkEnsureWarm: every later VM that does not trust the generation; one save.
func BenchmarkEnsureWarm(b *testing.B) { benchNets(b, ensureOp, ensureOp) }

// BenchmarkRemove: the network's last VM leaves; one save and one restore.
func BenchmarkRemove(b *testing.B) { benchNets(b, ensureOp, removeOp) }

// BenchmarkUnchanged: a warm VM that trusts the generation; no exec at all.
func BenchmarkUnchanged(b *testing.B) {
	var gen uint32
	bench(b, func(fw *Firewall) error {
		r, err := fw.EnsureGen(netA)
		gen = r.Gen
		return err
	}, func(fw *Firewall) error {
		if !fw.Unchanged(gen) {
			return errors.New("generation moved with nothing changing")
		}
		return nil
	})
}
