package testhost

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// Settle waits until no kvmnet run holds a lock of namespace ns: a VM's last
// down returns before its network is gone, and hands the deletion of the
// bridge to a child that holds the network's lock until it is done
// (lifecycle's TeardownProc). It is what a following up waits for, and the
// one way a test waits for "gone after the last down". Then it waits for
// the `kvmnet gc NETWORK` a daemon starts when its last tap leaves (cli's
// reap): one that queued for the lock behind the down finds nothing left
// to do, but is still a process in the namespace for a moment.
func Settle(t testing.TB, ns *testns.NS) {
	t.Helper()
	if err := waitLocks(ns); err != nil {
		t.Fatalf("wait for kvmnet's locks: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); reaping(ns); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a kvmnet gc still runs in %s after 10 s", ns.Name)
		}
	}
}

// reaping reports whether a `kvmnet gc` runs in namespace ns.
func reaping(ns *testns.NS) bool {
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		return false
	}
	for _, pid := range strings.Fields(string(out)) {
		argv, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err == nil && strings.HasPrefix(string(argv), "kvmnet\x00gc\x00") {
			return true
		}
	}
	return false
}

// waitLocks takes and drops every network lock of namespace ns.
func waitLocks(ns *testns.NS) error {
	return ns.Do(func() error {
		d, names, err := stateFiles()
		for _, name := range names {
			network, ok := strings.CutSuffix(name, ".lock")
			if !ok {
				continue
			}
			lk, err := d.Lock(network)
			if err != nil {
				return err
			}
			lk.Unlock()
		}
		return err
	})
}

// stateFiles returns the calling thread's namespace's state directory and
// the names of its files (none when it has no directory yet).
func stateFiles() (state.Dir, []string, error) {
	d, err := state.Open()
	if err != nil {
		return d, nil, err
	}
	ents, err := os.ReadDir(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil, nil
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return d, names, err
}

// Settle is Settle of the host's namespace.
func (h *Host) Settle() {
	h.T.Helper()
	Settle(h.T, h.NS)
}
