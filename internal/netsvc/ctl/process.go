package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/safefile"
	"github.com/kvmnet/kvmnet/internal/selfbin"
)

// ProcName is argv[0] of the daemon, and its binary's name (kvmnet-netsvc,
// whose main runs netsvc.Daemon). Alive checks it in /proc/PID/cmdline so
// that a stale pid file whose pid was reused never makes Stop kill a
// stranger.
const ProcName = "kvmnet-netsvc"

// ErrAlreadyRunning is returned by Start when the pid file names a live daemon.
var ErrAlreadyRunning = errors.New("netsvc daemon already running")

// spawnTimeout bounds how long Process.Wait waits for the daemon to serve.
const spawnTimeout = 5 * time.Second

// WritePIDFile records pid as the daemon of path. Start writes it as soon as
// the daemon runs, so that the next look (Alive, under the network's lock in
// package lifecycle) finds it, whether the daemon serves yet or not.
func WritePIDFile(path string, pid int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pid file directory: %w", err)
	}
	// Not synced: the pid file lives in /run, which no crash outlives.
	if err := writeFileAtomic(path, []byte(strconv.Itoa(pid)+"\n"), 0o644, false); err != nil {
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
	b, err := safefile.ReadFile(path, 64)
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
// (it writes its leases on the way out), then SIGKILL. It returns once the
// daemon's descriptors are closed, its lease file's lock and its ports free
// for the next daemon. It is not an error if no daemon runs; a stale pid
// file is removed. A daemon already on its way out (Exiting: its command
// line is gone before its descriptors) is not signalled, only waited for.
func Stop(pidFile string, timeout time.Duration) error {
	if pid, err := readPID(pidFile); err == nil && isDaemon(pid) {
		return kill(pidFile, pid, timeout)
	}
	return removeExited(pidFile, timeout)
}

// removeExited removes the pid file of a daemon that no longer runs, once
// its descriptors are closed: one on its way out (Exiting) is waited for, up
// to timeout, and not signalled.
func removeExited(pidFile string, timeout time.Duration) error {
	if pid, err := readPID(pidFile); err == nil && Exiting(pid) && !waitGone(pid, timeout) {
		return fmt.Errorf("netsvc pid %d still exiting after %s", pid, timeout)
	}
	return removeStale(pidFile)
}

// kill ends daemon pid of pidFile: SIGTERM, up to timeout, then SIGKILL.
func kill(pidFile string, pid int, timeout time.Duration) error {
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

// waitGone waits until pid, our daemon or exiting, is gone with its
// descriptors closed, or timeout passes. A pidfd wakes it the moment the
// last thread has exited, after it closed the descriptors; polling /proc is
// the fallback for kernels without pidfd_open (before 5.3).
func waitGone(pid int, timeout time.Duration) bool {
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		if !isDaemon(pid) && !Exiting(pid) { // the pid may have been reused before we opened it
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
	for isDaemon(pid) || Exiting(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Exiting reports whether process pid is on its way out with descriptors
// still open. Its main thread often leaves first: from then on its command line
// reads empty (isDaemon says no), while the other threads still hold the
// descriptors (the lease file's lock, the sockets) until the last of them
// has exited. That is PF_EXITING set, and not yet a zombie alone (state Z,
// one thread), in /proc/PID/stat. Whose process it is cannot be told any
// more; a caller only waits for it, never signals it.
func Exiting(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces and ')'
	if i < 0 {
		return false
	}
	// After the name: state ppid pgrp session tty_nr tpgid flags ... num_threads (the 18th).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 18 {
		return false
	}
	flags, err1 := strconv.ParseUint(f[6], 10, 64)
	threads, err2 := strconv.Atoi(f[17])
	if err1 != nil || err2 != nil || flags&pfExiting == 0 {
		return false
	}
	return f[0] != "Z" || threads > 1
}

// pfExiting is the kernel's PF_EXITING task flag (include/linux/sched.h),
// set as a thread starts to exit.
const pfExiting = 0x4

// Process is a daemon Start has started, ready or not yet.
type Process struct {
	pid      int
	pidFile  string
	logPath  string
	logStart int64              // the log's size at start: what follows is this daemon's
	ready    *os.File           // read end of the ready pipe (see Ready)
	done     chan struct{}      // closed once the daemon has exited and been reaped
	status   syscall.WaitStatus // how it exited, once done is closed

	mu     sync.Mutex // held to reap, and to signal: a pid reaped may be another's
	reaped bool
}

// Inherited descriptors of a daemon Start starts: the ready pipe's write end,
// then its Sockets.
const (
	readyFD       = 3
	firstSocketFD = 4
)

// Start binds the daemon's sockets (Bind), starts the daemon detached with
// them, writes its pid file and returns without waiting for it to serve: a
// guest's datagrams wait in the sockets meanwhile, so a caller need not wait
// at all (a cold network's up does not). What another program could hold
// (a port, the lease file's lock) or a lease file that is a directory fails
// Start, with nothing left open or running. exe is a binary whose main runs
// netsvc.Main, i.e. kvmnet-netsvc; argv is {ProcName, configPath}. The daemon runs in its own session with stdin /dev/null,
// stdout and stderr appended to logPath, the ready pipe and its sockets (see
// Inherit), and in the network namespace of the calling thread.
func Start(exe string, configPath string, logPath string) (*Process, error) {
	c, err := ReadDaemonConfig(configPath)
	if err != nil {
		return nil, err
	}
	if pid, ok := Alive(c.PIDFile); ok {
		return nil, fmt.Errorf("%w: pid %d (%s)", ErrAlreadyRunning, pid, c.PIDFile)
	}
	// The last daemon may still be exiting, its lease file's lock held.
	if err := removeExited(c.PIDFile, spawnTimeout); err != nil {
		return nil, err
	}
	p, err := spawn(exe, configPath, logPath, c)
	if err != nil {
		return nil, err
	}
	if err := WritePIDFile(c.PIDFile, p.Pid()); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// spawn binds c's sockets and starts the daemon with them and the ready pipe.
func spawn(exe, configPath, logPath string, c Config) (*Process, error) {
	logf, err := safefile.Open(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open netsvc log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	socks, err := Bind(c)
	if err != nil {
		return nil, err
	}
	defer socks.Close() // the daemon holds its own copies
	ready, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("netsvc ready pipe: %w", err)
	}
	defer readyW.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	files := []uintptr{devnull.Fd(), logf.Fd(), logf.Fd(), readyW.Fd()}
	for _, f := range socks.Files() {
		files = append(files, f.Fd())
	}
	pid, err := selfbin.StartEnv(exe, []string{ProcName, configPath}, DaemonEnv(), files)
	if err != nil {
		ready.Close()
		return nil, fmt.Errorf("start netsvc: %w", err)
	}
	p := &Process{pid: pid, pidFile: c.PIDFile, logPath: logPath, logStart: logStart, ready: ready, done: make(chan struct{})}
	go p.reap() // also if it dies while we live
	return p, nil
}

// reap waits for the daemon to exit, then reaps it.
func (p *Process) reap() {
	var info unix.Siginfo
	for errors.Is(unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil), unix.EINTR) {
	}
	p.mu.Lock()
	for {
		if _, err := syscall.Wait4(p.pid, &p.status, 0, nil); !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	p.reaped = true
	p.mu.Unlock()
	close(p.done)
}

// Ready is what a daemon Start started calls once it serves: it writes one
// byte into the ready pipe and closes it, which Process.Wait waits for (a
// daemon that dies first closes it with nothing written).
func Ready() {
	_, _ = unix.Write(readyFD, []byte{1})
	unix.Close(readyFD)
}

// Pid is the daemon's process id.
func (p *Process) Pid() int { return p.pid }

// Wait returns once the daemon serves, for a caller that wants to know it
// started well (tests; an up does not wait). If the daemon dies first, the
// error carries its last log line; if it is not serving within
// spawnTimeout, Wait kills it.
func (p *Process) Wait() (int, error) {
	served := make(chan bool, 1)
	go func() { // until EOF: by then the daemon holds the pipe no more
		b, _ := io.ReadAll(p.ready)
		served <- len(b) == 1
	}()
	select {
	case ok := <-served:
		if ok {
			return p.Pid(), nil
		}
		<-p.done
		return 0, fmt.Errorf("netsvc exited at start (%s): %s", exitText(p.status), logTail(p.logPath, p.logStart))
	case <-time.After(spawnTimeout):
		p.Kill()
		return 0, fmt.Errorf("netsvc not ready after %s: %s", spawnTimeout, logTail(p.logPath, p.logStart))
	}
}

// Kill ends the daemon at once, ready or not, and removes its pid file: it is
// the undo of Start. The daemon is this process's child until reap reaps it,
// under the lock Kill signals it under, so its pid cannot have been reused.
func (p *Process) Kill() {
	pid := p.Pid()
	p.mu.Lock()
	if !p.reaped {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	p.mu.Unlock()
	<-p.done
	p.ready.Close()
	RemovePIDFile(p.pidFile, pid)
}

func exitText(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	if ws.ExitStatus() == 0 {
		return "status 0"
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

// logTail returns the last non-empty line the daemon logged since start.
func logTail(path string, start int64) string {
	f, err := safefile.Open(path, os.O_RDONLY, 0)
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
