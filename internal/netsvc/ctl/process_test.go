package ctl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAliveForeignPid: a pid file naming a live process that is not ours
// (pid reuse) is not alive, and Stop must not signal that process.
func TestAliveForeignPid(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "x.pid")
	sleep := exec.Command("sleep", "5")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(sleep.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := Alive(pidFile); ok {
		t.Error("a foreign process counts as our daemon")
	}
	if err := Stop(pidFile, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sleep.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("Stop signalled a foreign process: %v", err)
	}
}

// TestSpawnNeedsPIDFile: without a pid file Start could never see the daemon
// ready, so it refuses before starting anything.
func TestSpawnNeedsPIDFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	if err := WriteConfig(cfg, testConfig()); err != nil {
		t.Fatal(err)
	}
	_, err := Start("/nonexistent", cfg, filepath.Join(dir, "log"))
	if err == nil || !strings.Contains(err.Error(), "pid_file") {
		t.Errorf("Start without pid file: %v", err)
	}
}

func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "x.pid")
	if err := WritePIDFile(path, 4242); err != nil {
		t.Fatal(err)
	}
	if pid, err := readPID(path); err != nil || pid != 4242 {
		t.Fatalf("readPID = %d %v", pid, err)
	}
	RemovePIDFile(path, 1) // names another daemon: kept
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("pid file of another pid removed: %v", err)
	}
	RemovePIDFile(path, 4242)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
}
