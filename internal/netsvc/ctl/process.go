package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ProcName is argv[0] of the daemon: the kvmnet binary started under this name
// runs netsvc.Main. Alive checks it in /proc/PID/cmdline so that a stale pid
// file whose pid was reused never makes Stop kill a stranger.
const ProcName = "kvmnet-netsvc"

// ErrAlreadyRunning is returned by Spawn when the pid file names a live daemon.
var ErrAlreadyRunning = errors.New("netsvc daemon already running")

// spawnTimeout bounds how long Spawn waits for the daemon to bind its sockets.
const spawnTimeout = 5 * time.Second

// WritePIDFile records pid as the daemon of path. The daemon writes it once
// its sockets are bound: Spawn waits for exactly this.
func WritePIDFile(path string, pid int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pid file directory: %w", err)
	}
	if err := writeFileAtomic(path, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// RemovePIDFile removes the pid file if it still names pid: a newer daemon
// may have replaced it.
func RemovePIDFile(path string, pid int) {
	if p, err := readPID(path); err == nil && p == pid {
		os.Remove(path)
	}
}

// readPID reads the pid in a pid file.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: not a pid", path)
	}
	return pid, nil
}

// Alive reports whether the pid file names a running daemon of ours.
func Alive(pidFile string) (pid int, ok bool) {
	pid, err := readPID(pidFile)
	if err != nil {
		return 0, false
	}
	return pid, isDaemon(pid)
}

// isDaemon reports whether pid runs with argv[0] == ProcName. A zombie has an
// empty cmdline, so it counts as gone.
func isDaemon(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(b, []byte{0})
	return string(argv0) == ProcName
}

// Stop ends the daemon of pidFile: SIGTERM, up to timeout for it to exit
// (it writes its leases on the way out), then SIGKILL. It is not an error if
// no daemon runs; a stale pid file is removed.
func Stop(pidFile string, timeout time.Duration) error {
	pid, ok := Alive(pidFile)
	if !ok {
		return removeStale(pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop netsvc pid %d: %w", pid, err)
	}
	if waitGone(pid, timeout) {
		return removeStale(pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill netsvc pid %d: %w", pid, err)
	}
	if !waitGone(pid, time.Second) {
		return fmt.Errorf("netsvc pid %d survived SIGKILL", pid)
	}
	return removeStale(pidFile)
}

// removeStale removes a pid file whose daemon is gone.
func removeStale(pidFile string) error {
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

// waitGone waits until pid is no longer our daemon or timeout passes. A pidfd
// wakes it the moment the daemon exits; polling /proc is the fallback for
// kernels without pidfd_open (before 5.3).
func waitGone(pid int, timeout time.Duration) bool {
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		if !isDaemon(pid) { // the pid may have been reused before we opened it
			return true
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for deadline := time.Now().Add(timeout); ; {
			left := time.Until(deadline)
			if left <= 0 {
				return false
			}
			n, err := unix.Poll(fds, int(left.Milliseconds())+1)
			if n > 0 {
				return true
			}
			if err != nil && !errors.Is(err, unix.EINTR) {
				break
			}
		}
	}
	deadline := time.Now().Add(timeout)
	for isDaemon(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Spawn starts the daemon detached: exe (a binary whose main runs netsvc.Main
// when argv[0] is ProcName, i.e. kvmnet) with argv {ProcName, configPath}, in
// its own session, stdin /dev/null, stdout and stderr appended to logPath, no
// other descriptor. It returns once the daemon has bound its sockets and
// written its pid file, so a DHCP DISCOVER sent right after is answered; if
// the daemon dies first, the error carries its last log line. The child
// inherits the network namespace of the calling thread.
func Spawn(exe string, configPath string, logPath string) (pid int, err error) {
	c, err := ReadDaemonConfig(configPath)
	if err != nil {
		return 0, err
	}
	if pid, ok := Alive(c.PIDFile); ok {
		return pid, fmt.Errorf("%w: pid %d (%s)", ErrAlreadyRunning, pid, c.PIDFile)
	}
	if err := removeStale(c.PIDFile); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open netsvc log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := &exec.Cmd{
		Path: exe, Args: []string{ProcName, configPath}, Dir: "/",
		Stdin: devnull, Stdout: logf, Stderr: logf,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start netsvc: %w", err)
	}
	return waitReady(cmd, c.PIDFile, logPath, logStart)
}

// waitReady waits until the child's pid is in the pid file, the child exits,
// or spawnTimeout passes (then it kills the child).
func waitReady(cmd *exec.Cmd, pidFile, logPath string, logStart int64) (int, error) {
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // also reaps the daemon if it dies while we live
	deadline := time.After(spawnTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return 0, fmt.Errorf("netsvc exited at start (%s): %s", exitText(err), logTail(logPath, logStart))
		case <-deadline:
			_ = cmd.Process.Kill()
			return 0, fmt.Errorf("netsvc not ready after %s: %s", spawnTimeout, logTail(logPath, logStart))
		case <-tick.C:
			if p, err := readPID(pidFile); err == nil && p == pid {
				return pid, nil
			}
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// logTail returns the last non-empty line the daemon logged since start.
func logTail(path string, start int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "no log"
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return "no log"
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<16))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return "nothing logged"
	}
	return strings.TrimPrefix(last, "error: ")
}
