package ctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAdvanceGen: the daemon's and the watcher's moves of the generation
// file write only a file the up wrote, so that one in flight when the down
// removed it does not leave it behind, and only over the generation they
// moved from, so that an up's newer one stays.
func TestAdvanceGen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.gen")
	if err := AdvanceGen(path, 6, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AdvanceGen made the file: %v", err)
	}
	if err := WriteGen(path, 7); err != nil {
		t.Fatal(err)
	}
	if err := AdvanceGen(path, 7, 8); err != nil {
		t.Fatal(err)
	}
	if g, err := ReadGen(path); err != nil || g != 8 {
		t.Errorf("ReadGen = %d, %v, want 8", g, err)
	}
	// An up wrote 12 since the daemon read 8: the daemon's 9 must not
	// take it back.
	if err := WriteGen(path, 12); err != nil {
		t.Fatal(err)
	}
	if err := AdvanceGen(path, 8, 9); err != nil {
		t.Fatal(err)
	}
	if g, err := ReadGen(path); err != nil || g != 12 {
		t.Errorf("after a stale advance: ReadGen = %d, %v, want the up's 12", g, err)
	}
}

// TestWatcherCurrent: a watcher with this version's eight arguments is
// current; one with an older version's six (no BRIDGE, ISOLATE) or five (no
// GENFILE) is not, and the up starts it again.
func TestWatcherCurrent(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{[]string{ProcName, "-c", "sleep 5; exit 0", WatchFlag, "lab", "/run/x.gen", "br0", "-"}, true},
		{[]string{ProcName, "-c", "sleep 5; exit 0", WatchFlag, "lab", "/run/x.gen"}, false},
		{[]string{ProcName, "-c", "sleep 5; exit 0", WatchFlag, "lab"}, false},
	} {
		p, err := os.StartProcess("/bin/sh", c.argv, &os.ProcAttr{})
		if err != nil {
			t.Fatal(err)
		}
		// The exec returns before the new program's arguments are in
		// place: wait for them.
		for i := 0; i < 100 && !isDaemon(p.Pid); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if got := WatcherCurrent(p.Pid); got != c.want {
			t.Errorf("argv %q: WatcherCurrent = %v, want %v", c.argv, got, c.want)
		}
		_ = p.Kill()
		_, _ = p.Wait()
	}
}
