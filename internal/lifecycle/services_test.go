package lifecycle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindDaemonBinaryIgnoresPath: a kvmnet-netsvc in PATH is never the
// daemon, and one beside the helper that another user could have written is
// refused.
func TestFindDaemonBinaryIgnoresPath(t *testing.T) {
	if _, err := os.Stat(installedDaemon); err == nil {
		t.Skipf("%s is installed", installedDaemon)
	}
	stubs := t.TempDir()
	if err := os.WriteFile(filepath.Join(stubs, daemonBinary), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", stubs)
	if p, err := findDaemonBinary(); err == nil || !strings.Contains(err.Error(), daemonBinary+" binary not found next to") {
		t.Errorf("findDaemonBinary with the daemon only in PATH: %q, %v", p, err)
	}
	if err := os.Chmod(filepath.Join(stubs, daemonBinary), 0o777); err != nil {
		t.Fatal(err)
	}
	daemonBeside(t, stubs)
	if p, err := findDaemonBinary(); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("findDaemonBinary with a world-writable daemon beside it: %q, %v", p, err)
	}
}
