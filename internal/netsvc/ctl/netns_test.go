package ctl

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestLeaseFileInNetns: the host's namespace keeps lease_dir/NAME.leases, a
// named namespace gets NAME@ITS-NAME.leases, an unnamed one its cookie, so
// that two namespaces running the same network never share a lease file.
func TestLeaseFileInNetns(t *testing.T) {
	ns := testns.New(t)
	path := filepath.Join(t.TempDir(), "default.leases")
	if self, err := nsID("/proc/thread-self/ns/net"); err == nil {
		if host, err := nsID("/proc/1/ns/net"); err == nil && host == self {
			if got, err := LeaseFileInNetns(path); err != nil || got != path {
				t.Errorf("host namespace: %s %v, want %s", got, err, path)
			}
		}
	}
	var named string
	if err := ns.Do(func() error {
		var err error
		named, err = LeaseFileInNetns(path)
		return err
	}); err != nil || named != strings.TrimSuffix(path, ".leases")+"@"+ns.Name+".leases" {
		t.Errorf("namespace %s: %s %v", ns.Name, named, err)
	}
	unnamed := map[string]bool{}
	for range 2 {
		got, err := inUnnamedNetns(t)
		if err != nil || !strings.HasPrefix(filepath.Base(got), "default@cookie-") {
			t.Fatalf("unnamed namespace: %s %v", got, err)
		}
		unnamed[got] = true
	}
	if len(unnamed) != 2 {
		t.Errorf("two unnamed namespaces share a lease file: %v", unnamed)
	}
}

// inUnnamedNetns runs LeaseFileInNetns in a new namespace that has no name,
// on a thread that is never unlocked, so it ends with its goroutine.
func inUnnamedNetns(t *testing.T) (string, error) {
	type result struct {
		path string
		err  error
	}
	c := make(chan result)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			c <- result{err: err}
			return
		}
		p, err := LeaseFileInNetns(filepath.Join(t.TempDir(), "default.leases"))
		c <- result{p, err}
	}()
	r := <-c
	return r.path, r.err
}
