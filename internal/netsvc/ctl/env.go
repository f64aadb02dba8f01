package ctl

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// DaemonProcs is the most Ps (GOMAXPROCS) a daemon runs with. The Go
// runtime sizes its per-P caches and GC workers, and starts the threads
// that run them, from GOMAXPROCS, which defaults to the host's CPU count:
// on a 64-CPU host a daemon that needs at most two CPUs would hold 64 of
// each. One P would save ~0.5 MB more per daemon here, but costs TTL-0
// forwards a third to a half of their rate beside dnsmasq (one UDP reader,
// and the upstream answers waiting on the netpoller while it reads: see
// docs/memory.md).
const DaemonProcs = 2

// DaemonEnv is the environment a daemon (Start, StartWatcher) runs with:
// this process's, with GOMAXPROCS at most DaemonProcs. In the environment,
// not set by the daemon's main: a daemon that started with more Ps and
// dropped them kept ~0.4 MB more at rest than one that started with fewer
// (BenchmarkDaemonMemory, 2 Ps against 1).
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
