// Package testns gives tests a throwaway network namespace, made with
// `ip netns add` and deleted when the test ends, so that no test ever touches
// the machine's own namespace.
package testns

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/kvmnet/kvmnet/internal/state"
)

// NS is a named network namespace that lives as long as the test that made it.
type NS struct {
	Name string
	// State is kvmnet's state directory for the namespace (state.Path),
	// removed when the test ends, even if the test deleted the namespace.
	State string
	t     testing.TB
}

// New makes a fresh namespace (`ip netns add kvmt-XXXXXXXX`) with loopback up,
// and deletes it, with every link in it, when t ends. It skips t when not root.
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &NS{Name: "kvmt-" + hex.EncodeToString(b), t: t}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		// Kill whatever still runs in it first: daemons a failed test left,
		// and the `kvmnet gc` a daemon starts when its bridge loses its last
		// port, which would make kvmnet's state directory again once removed.
		ns.killAll()
		// kvmnet keeps state per namespace under /run/kvmnet; a namespace
		// that is gone leaves its directory behind, so take it with us.
		if ns.State != "" {
			_ = os.RemoveAll(ns.State)
		}
		_ = exec.Command("ip", "netns", "del", ns.Name).Run()
	})
	if err := ns.Do(func() (err error) { ns.State, err = state.Path(); return err }); err != nil {
		t.Fatalf("kvmnet's state directory for %s: %v", ns.Name, err)
	}
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// killAll kills every process in the namespace and waits, a second at most,
// until none is left: one may start another as it dies.
func (ns *NS) killAll() {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		pids, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
		if err != nil || len(strings.Fields(string(pids))) == 0 {
			return
		}
		for _, p := range strings.Fields(string(pids)) {
			_ = exec.Command("kill", "-9", p).Run()
		}
	}
}

// DaemonLogs returns the logs of the namespace's DHCP/DNS daemons
// (NETWORK.netsvc.log in its state directory), each under its name: what a
// test shows when a guest got no lease.
func (ns *NS) DaemonLogs() string {
	paths, _ := filepath.Glob(filepath.Join(ns.State, "*.netsvc.log"))
	var b strings.Builder
	for _, p := range paths {
		log, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s:\n%s", p, log)
	}
	if b.Len() == 0 {
		return "no DHCP/DNS daemon log in " + ns.State
	}
	return b.String()
}

// Cmd returns a command that runs argv inside the namespace (`ip netns exec`).
func (ns *NS) Cmd(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
}

// Run runs argv inside the namespace and returns its stdout, its stderr and its error.
func (ns *NS) Run(argv ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	c := ns.Cmd(argv...)
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	return o.String(), e.String(), err
}

// MustRun runs argv inside the namespace and fails the test if it fails.
func (ns *NS) MustRun(argv ...string) string {
	ns.t.Helper()
	o, e, err := ns.Run(argv...)
	if err != nil {
		ns.t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(argv, " "), err, o, e)
	}
	return o
}

// Do runs f on a locked OS thread switched into the namespace, for tests that
// call netlink or the packages under test directly.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer origin.Close()
		h, err := netns.GetFromName(ns.Name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns.Name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		ferr := f()
		// Go back before unlocking: the thread may be the process's main
		// thread, which Go never terminates, and a process whose main thread
		// stays in the namespace is one `ip netns pids` lists and cleanup kills.
		// If going back fails the thread stays locked and dies with the goroutine.
		if netns.Set(origin) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

var (
	saveComment  = regexp.MustCompile(`(?m)^#.*\n`)
	saveCounters = regexp.MustCompile(`(?m)^(:\S+ \S+) \[\d+:\d+\]$`)
)

// IptablesSave returns `iptables-save` of the namespace without its timestamp
// comments and packet counters, so that two dumps compare equal when the rules do.
func (ns *NS) IptablesSave() string {
	ns.t.Helper()
	out := ns.MustRun("iptables-save")
	out = saveComment.ReplaceAllString(out, "")
	return saveCounters.ReplaceAllString(out, "$1")
}

// Ip6tablesSave is IptablesSave of `ip6tables-save`.
func (ns *NS) Ip6tablesSave() string {
	ns.t.Helper()
	out := ns.MustRun("ip6tables-save")
	out = saveComment.ReplaceAllString(out, "")
	return saveCounters.ReplaceAllString(out, "$1")
}

// Sysctl reads a sysctl of the namespace, e.g. "net.ipv4.ip_forward".
func (ns *NS) Sysctl(key string) string {
	ns.t.Helper()
	return strings.TrimSpace(ns.MustRun("sysctl", "-n", key))
}
