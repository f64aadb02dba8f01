package ctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestAdvanceGen: the daemon's and the watcher's moves of the generation
// file write only a file the up wrote, so that one in flight when the down
// removed it does not leave it behind.
func TestAdvanceGen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.gen")
	if err := AdvanceGen(path, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AdvanceGen made the file: %v", err)
	}
	if err := WriteGen(path, 7); err != nil {
		t.Fatal(err)
	}
	if err := AdvanceGen(path, 8); err != nil {
		t.Fatal(err)
	}
	if g, err := ReadGen(path); err != nil || g != 8 {
		t.Errorf("ReadGen = %d, %v, want 8", g, err)
	}
}
