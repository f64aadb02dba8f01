package netsvc

import (
	"runtime"
	"runtime/debug"
)

// The daemon's memory. One runs per network, each its own process, so what
// it keeps of its own (anonymous memory: heap, stacks) is paid once per
// network; its binary's pages are shared by every daemon of the host.
// Measured with runtime.MemStats and /proc/PID/status: the daemon's live
// data at rest is ~100 KB; the Go runtime keeps ~1.4 MB around it (a span
// per size class, a signal and a system stack per thread), and under a
// forwarding flood the heap grew to its 4 MB floor between collections.

// gcPercent is the daemon's GOGC. The live heap is small, so a collection
// costs tens of microseconds; at 20 (a 0.8 MB floor instead of 4 MB) a
// forwarding flood collects a few dozen times a second, for well under 1%
// of a CPU, and the daemon's anonymous memory after one stays near 4 MB
// instead of 6.5 (dnsperf, BenchmarkDNSVersusDnsmasq). One P (GOMAXPROCS=1,
// as dnsmasq is one thread) saved no memory and cost TTL-0 forwards a third
// of their rate, so the runtime keeps its default there.
const gcPercent = 20

// lean sets the runtime up for a small resident daemon: no allocation
// profiling (its bucket table alone is 1.4 MB of address space) and
// collections at gcPercent.
func lean() {
	runtime.MemProfileRate = 0
	debug.SetGCPercent(gcPercent)
}

// shed gives back the heap that starting left free (config, lease file,
// netlink dumps), once serving starts.
func shed() { debug.FreeOSMemory() }
