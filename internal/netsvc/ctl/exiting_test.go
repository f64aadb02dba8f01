package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// exitLateEnv names the lease file a re-executed test binary locks as a
// daemon would, before its main thread exits alone (exitLate).
const exitLateEnv = "KVMNET_TEST_EXIT_LATE"

func init() {
	if os.Getenv(exitLateEnv) != "" {
		runtime.LockOSThread() // main stays on the main thread, which exitLate ends
	}
}

func TestMain(m *testing.M) {
	if path := os.Getenv(exitLateEnv); path != "" {
		exitLate(path)
	}
	os.Exit(m.Run())
}

// exitLate is a daemon caught in its exit: it takes the lock of lease file
// path, says so, and ends its main thread, whose command line goes with it,
// while another thread keeps the lock until its stdin closes. That is a
// dying daemon slowed down at will: under load, its threads reach their exit
// one after another, the main one often first.
func exitLate(path string) {
	lock, err := LockLeaseFile(path)
	if err != nil {
		os.Exit(2)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		lock.Close()
		os.Exit(0)
	}()
	os.Stdout.WriteString("locked\n")
	_, _, _ = syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0) // this thread only, not the group
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
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Args[0] = ProcName
	cmd.Env = append(os.Environ(), exitLateEnv+"="+leases)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	for deadline := time.Now().Add(5 * time.Second); isDaemon(pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the helper's main thread did not exit")
		}
	}
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
	time.AfterFunc(late, func() { stdin.Close() })
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
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signaled() || ws.ExitStatus() != 0 {
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
