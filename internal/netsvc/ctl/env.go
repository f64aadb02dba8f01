package ctl

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// DaemonProcs is the most Ps (GOMAXPROCS) a daemon runs with: one, as
// dnsmasq is one thread. The Go runtime sizes its per-P caches and GC
// workers, and starts the threads that run them, from GOMAXPROCS, which
// defaults to the host's CPU count: one P instead of two saved 0.6-0.7 MB
// of each daemon's private memory at rest, and its DNS answers as many
// queries a second beside dnsmasq, for less CPU time a query
// (BenchmarkDNSVersusDnsmasq, alternating runs: see docs/memory.md).
const DaemonProcs = 1

// DaemonEnv is the environment a daemon (Start, StartWatcher) runs with:
// this process's, with GOMAXPROCS at most DaemonProcs. In the environment,
// not set by the daemon's main: a daemon that started with two Ps and
// dropped one kept ~0.4 MB more at rest than one that started with one
// (BenchmarkDaemonMemory).
func DaemonEnv() []string {
	env := os.Environ()
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		// The runtime reads the first GOMAXPROCS: drop the caller's.
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return append(out, "GOMAXPROCS="+strconv.Itoa(min(DaemonProcs, runtime.GOMAXPROCS(0))))
}
