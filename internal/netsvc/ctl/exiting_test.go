package ctl

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testproc"
)

func TestMain(m *testing.M) {
	// A daemon caught in its exit: it holds the lease file's lock (the
	// argument) while its main thread, and its command line, are gone.
	testproc.Main(func(path string) func() {
		lock, err := LockLeaseFile(path)
		if err != nil {
			os.Exit(2)
		}
		return func() { lock.Close() }
	})
	os.Exit(m.Run())
}

// TestStopWaitsForExitingDaemon: Stop on a daemon whose main thread has
// exited (its command line empty) while its other threads still hold the
// lease file's lock returns only once the lock is free, and signals it not:
// an up right after a down must find the lease file free. Stop took such a
// daemon for gone, and the next natup failed with "in use by another netsvc
// daemon" (TestTeardownInProgress on a loaded machine).
func TestStopWaitsForExitingDaemon(t *testing.T) {
	dir := t.TempDir()
	leases, pidFile := filepath.Join(dir, "default.leases"), filepath.Join(dir, "default.netsvc.pid")
	e := testproc.ExitLate(t, leases, ProcName)
	pid := e.Pid
	if !Exiting(pid) {
		t.Fatalf("pid %d, its main thread gone and the lock held, is not Exiting", pid)
	}
	if _, err := LockLeaseFile(leases); !errors.Is(err, ErrLeaseFileInUse) {
		t.Fatalf("the exiting daemon's lock: %v, want in use", err)
	}
	if err := WritePIDFile(pidFile, pid); err != nil {
		t.Fatal(err)
	}

	const late = 300 * time.Millisecond
	time.AfterFunc(late, e.Release)
	start := time.Now()
	if err := Stop(pidFile, 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	took := time.Since(start)
	lock, err := LockLeaseFile(leases)
	if err != nil {
		t.Fatalf("lease file right after Stop (took %s): %v", took, err)
	}
	lock.Close()
	if took < late {
		t.Errorf("Stop returned after %s, before the daemon exited (%s)", took, late)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after Stop: %v", err)
	}
	err = e.Wait()
	if ws, ok := e.ProcessState().Sys().(syscall.WaitStatus); !ok || ws.Signaled() || ws.ExitStatus() != 0 {
		t.Errorf("the exiting daemon was signalled: %v", err)
	}
	if Exiting(pid) {
		t.Errorf("pid %d reaped, yet Exiting", pid)
	}
}

// TestExitingZombie: a zombie whose threads are all gone has closed its
// descriptors: not Exiting (nothing reaps an orphan here, so a stale pid
// file often names one).
func TestExitingZombie(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := strconv.Itoa(cmd.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + pid + "/stat")
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no zombie")
		}
	}
	if Exiting(cmd.Process.Pid) {
		t.Error("a zombie counts as exiting")
	}
}
