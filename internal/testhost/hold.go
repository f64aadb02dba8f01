package testhost

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Hold stops (SIGSTOP) the processes that heal network's rules, its
// DHCP/DNS daemon and its rule watcher, for a test that breaks the rules to
// see what doctor, status or the next up make of them; the function it
// returns lets them go on (SIGCONT), as does the test's end. A held daemon
// still counts as running, and serves nothing.
func (h *Host) Hold(network string) (resume func()) {
	h.T.Helper()
	var pids []int
	for _, ext := range []string{".netsvc.pid", ".watch.pid"} {
		b, err := os.ReadFile(filepath.Join(h.State, network+ext))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			h.T.Fatalf("hold %s's pid %d: %v", network, pid, err)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		h.T.Fatalf("hold %s: no daemon or rule watcher runs", network)
	}
	resume = sync.OnceFunc(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	h.T.Cleanup(resume)
	return resume
}
