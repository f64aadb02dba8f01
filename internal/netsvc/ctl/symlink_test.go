package ctl

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmnet/kvmnet/internal/safefile"
)

// TestStartRefusesPlantedLinks: a symbolic link planted where the daemon's
// log, configuration or pid file goes is refused, and the file it points to
// is neither appended to nor read.
func TestStartRefusesPlantedLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, log, pid := filepath.Join(dir, "c.json"), filepath.Join(dir, "log"), filepath.Join(dir, "pid")
	c := testConfig()
	c.PIDFile = pid
	if err := WriteConfig(cfg, c); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, log); err != nil {
		t.Fatal(err)
	}
	if _, err := Start("/bin/true", cfg, log); !errors.Is(err, safefile.ErrSymlink) {
		t.Errorf("Start with a planted log link: %v", err)
	}
	if err := os.Symlink(target, pid); err != nil {
		t.Fatal(err)
	}
	if _, err := readPID(pid); !errors.Is(err, safefile.ErrSymlink) {
		t.Errorf("readPID through a planted link: %v", err)
	}
	os.Remove(cfg)
	if err := os.Symlink(target, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(cfg); !errors.Is(err, safefile.ErrSymlink) {
		t.Errorf("ReadConfig through a planted link: %v", err)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "precious" {
		t.Errorf("target changed: %q, %v", b, err)
	}
}
