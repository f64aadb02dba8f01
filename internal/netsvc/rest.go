package netsvc

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// The daemon's memory. One runs per network, each its own process, so what
// it keeps of its own (anonymous memory: heap, stacks, the runtime's own
// structures) is paid once per network; its binary's pages are shared by
// every daemon of the host. Measured with runtime.MemStats and
// /proc/PID/smaps_rollup (BenchmarkDaemonMemory, docs/memory.md): the
// daemon's live data at rest is ~150 KB; the Go runtime keeps the rest
// around it (a span per size class per P, a system and a signal stack per
// thread, goroutine stacks, its heap metadata).

// gcPercent is the daemon's GOGC. The live heap is small, so a collection
// costs tens of microseconds; at 20 (a 0.8 MB floor instead of 4 MB) a
// forwarding flood collects a few dozen times a second, for well under 1%
// of a CPU, and the daemon's anonymous memory after one stays near 4 MB
// instead of 6.5 (dnsperf, BenchmarkDNSVersusDnsmasq).
const gcPercent = 20

// lean sets the runtime up for a small resident daemon: no allocation
// profiling (its bucket table alone is 1.4 MB of address space),
// collections at gcPercent, and at most ctl.DaemonProcs Ps, for a daemon
// started without ctl.DaemonEnv.
func lean() {
	runtime.MemProfileRate = 0
	debug.SetGCPercent(gcPercent)
	if runtime.GOMAXPROCS(0) > ctl.DaemonProcs {
		runtime.GOMAXPROCS(ctl.DaemonProcs)
	}
}

// shed gives back the heap that starting left free (config, lease file,
// netlink dumps), once serving starts.
func shed() { debug.FreeOSMemory() }

// restCheck is how often restLoop looks for a burst that has ended.
const restCheck = 5 * time.Second

// restLoop gives the heap a burst grew back to the kernel once the burst is
// over: a thousand DHCP clients, or a DNS flood, leave the heap's free
// pages and grown goroutine stacks resident (the runtime's background
// scavenger keeps up to 10% over its goal, and returns pages slowly): 1 MB
// after 1000 leases, for a daemon whose live data is then 0.5 MB. A burst is seen by the
// collections it caused: when some ran in one restCheck and none in the
// next, the daemon is at rest again and sheds (a forced collection and a
// scavenge: under a millisecond for this heap). The count is
// runtime.ReadMemStats's, whose stop of the world costs microseconds here
// (runtime/metrics, which does not stop it, keeps a 14 kB table).
func (s *Server) restLoop(ctx context.Context) error {
	var ms runtime.MemStats
	gcs := func() uint32 { runtime.ReadMemStats(&ms); return ms.NumGC }
	tick := time.NewTicker(restCheck)
	defer tick.Stop()
	last, busy := gcs(), false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		n := gcs()
		switch {
		case n != last:
			busy = true
		case busy:
			shed()
			busy = false
			n = gcs() // shed's own collection is not a burst
		}
		last = n
	}
}
