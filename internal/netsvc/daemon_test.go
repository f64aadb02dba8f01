package netsvc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// fdTargets returns what each open fd of pid points at.
func fdTargets(t testing.TB, pid int) map[int]string {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		out[fd], _ = os.Readlink(filepath.Join(dir, e.Name()))
	}
	return out
}

// TestSpawnHoldsNoInheritedFD plays QEMU: the spawning process holds an fd
// without close-on-exec (the tap). The daemon must not keep it.
func TestSpawnHoldsNoInheritedFD(t *testing.T) {
	n := newTestNet(t, testConfig())
	marker := filepath.Join(n.dir, "tap-marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(marker, syscall.O_RDONLY, 0) // no O_CLOEXEC, like QEMU's tap fd
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)

	// The premise: an ordinary child started by exec.Cmd does inherit it.
	sleep := exec.Command("sleep", "5")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	inherited := fdTargets(t, sleep.Process.Pid)
	sleep.Process.Kill()
	sleep.Wait()
	if !containsValue(inherited, marker) {
		t.Fatalf("premise broken: sleep did not inherit the fd: %v", inherited)
	}

	n.start()
	fds := fdTargets(t, n.pid)
	if containsValue(fds, marker) {
		t.Errorf("daemon holds the inherited fd: %v", fds)
	}
	if fds[0] != "/dev/null" || fds[1] != n.logPath() || fds[2] != n.logPath() {
		t.Errorf("daemon stdio %q %q %q, want /dev/null and the log", fds[0], fds[1], fds[2])
	}
	// Beyond stdio: its sockets, the runtime's epoll, the cgroup files the
	// Go runtime reads for GOMAXPROCS and the lease file's lock (all opened by
	// the daemon itself).
	for fd, target := range fds {
		own := strings.HasPrefix(target, "socket:") || strings.HasPrefix(target, "anon_inode:") ||
			strings.HasPrefix(target, "/sys/fs/cgroup/") || target == n.cfg.LeaseFile+".lock"
		if fd > 2 && !own {
			t.Errorf("daemon fd %d -> %s: not one of its own", fd, target)
		}
	}
	if sid := sessionOf(t, n.pid); sid != n.pid {
		t.Errorf("daemon session %d, want its own (%d)", sid, n.pid)
	}
}

func containsValue(m map[int]string, v string) bool {
	for _, x := range m {
		if x == v {
			return true
		}
	}
	return false
}

// sessionOf reads the session id from /proc/PID/stat.
func sessionOf(t testing.TB, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name in parentheses: state ppid pgrp session.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	sid, _ := strconv.Atoi(f[3])
	return sid
}

func TestSpawnAliveStop(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	if pid, ok := ctl.Alive(n.cfg.PIDFile); !ok || pid != n.pid {
		t.Fatalf("Alive = %d %v, want %d", pid, ok, n.pid)
	}
	exe, _ := os.Executable()
	cfgPath := filepath.Join(n.dir, "netsvc.json")
	if _, err := spawn(exe, cfgPath, n.logPath()); !errors.Is(err, ctl.ErrAlreadyRunning) {
		t.Errorf("second spawn: %v, want ErrAlreadyRunning", err)
	}
	if err := ctl.Stop(n.cfg.PIDFile, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := ctl.Alive(n.cfg.PIDFile); ok {
		t.Error("alive after Stop")
	}
	if _, err := os.Stat(n.cfg.PIDFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left: %v", err)
	}
	if err := ctl.Stop(n.cfg.PIDFile, time.Second); err != nil {
		t.Errorf("Stop of a stopped daemon: %v", err)
	}
}

// TestKillWhileStarting: Kill, the undo of Start, ends a daemon that may not
// be ready yet and leaves neither a process nor a pid file.
func TestKillWhileStarting(t *testing.T) {
	n := newTestNet(t, testConfig())
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(n.dir, "netsvc.json")
	if err := ctl.WriteConfig(cfgPath, n.cfg); err != nil {
		t.Fatal(err)
	}
	var p *ctl.Process
	if err := n.host.Do(func() (err error) { p, err = ctl.Start(exe, cfgPath, n.logPath()); return err }); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	p.Kill()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("daemon pid %d still exists after Kill: %v", pid, err)
	}
	if _, err := os.Stat(n.cfg.PIDFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left: %v", err)
	}
}

// TestSpawnReportsStartupError: a daemon that cannot bind dies, and Spawn
// returns its error text from the log.
func TestSpawnReportsStartupError(t *testing.T) {
	c := testConfig()
	c.Bridge = "nosuchbr0"
	n := newTestNet(t, c)
	exe, _ := os.Executable()
	cfgPath := filepath.Join(n.dir, "netsvc.json")
	if err := ctl.WriteConfig(cfgPath, n.cfg); err != nil {
		t.Fatal(err)
	}
	err := n.host.Do(func() error {
		_, err := spawn(exe, cfgPath, n.logPath())
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "nosuchbr0") || strings.Contains(err.Error(), "\n") {
		t.Errorf("spawn error %q, want one line naming nosuchbr0", err)
	}
}

// TestDaemonExitsWhenBridgeGoes: sockets bound to a deleted bridge serve
// nobody, so the daemon exits and the next up starts a fresh one.
func TestDaemonExitsWhenBridgeGoes(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.start()
	n.host.MustRun("ip", "link", "del", "br0")
	deadline := time.Now().Add(3 * bridgeWatchInterval)
	for running(n.pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := ctl.Alive(n.cfg.PIDFile); ok {
		t.Fatal("daemon still running after its bridge was deleted")
	}
	if _, err := os.Stat(n.cfg.PIDFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left behind: %v", err)
	}
	if log, _ := os.ReadFile(n.logPath()); !strings.Contains(string(log), "bridge br0 gone") {
		t.Errorf("no exit reason in the log:\n%s", log)
	}
}

// running reports whether pid is still the daemon (and not yet a zombie,
// whose cmdline is empty). Unlike ctl.Alive it ignores the pid file, which the
// daemon removes before it logs why it exits.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.HasPrefix(string(b), ctl.ProcName+"\x00")
}
