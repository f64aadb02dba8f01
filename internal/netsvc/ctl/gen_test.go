package ctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// TestWatcherCurrent: a watcher runs current when its arguments are the
// ones this version gives it for the network as it is now, but for the
// generation it started at; one an older version started (six arguments,
// no BRIDGE and ISOLATE; five, no GENFILE), or one for another bridge,
// isolation or EVPN link, is started again.
func TestWatcherCurrent(t *testing.T) {
	w := Watcher{Network: "lab", PIDFile: "/run/kvmnet/lab.watch.pid", GenFile: "/run/kvmnet/lab.gen", Gen: 7, Bridge: "br0"}
	cmdline := func(argv ...string) []byte { return []byte(strings.Join(argv, "\x00") + "\x00") }
	cases := []struct {
		name    string
		cmdline []byte
		want    bool
	}{
		{"as started", cmdline(w.argv()...), true},
		{"at another generation", cmdline(ProcName, WatchFlag, "lab", w.PIDFile, "12", w.GenFile, "br0", "-"), true},
		{"an older version's six", cmdline(ProcName, WatchFlag, "lab", w.PIDFile, "7", w.GenFile), false},
		{"an older version's five", cmdline(ProcName, WatchFlag, "lab", w.PIDFile, "7"), false},
		{"isolating", cmdline(ProcName, WatchFlag, "lab", w.PIDFile, "7", w.GenFile, "br0", IsolateArg), false},
		{"another bridge", cmdline(ProcName, WatchFlag, "lab", w.PIDFile, "7", w.GenFile, "br1", "-"), false},
		{"an EVPN link", cmdline(ProcName, WatchFlag, "lab", w.PIDFile, "7", w.GenFile, "br0", "-", "vx0"), false},
		{"another network's", cmdline(ProcName, WatchFlag, "lan", w.PIDFile, "7", w.GenFile, "br0", "-"), false},
	}
	for _, c := range cases {
		if got := sameWatcher(c.cmdline, w.argv()); got != c.want {
			t.Errorf("%s: %q is current: %v, want %v", c.name, c.cmdline, got, c.want)
		}
	}
}
