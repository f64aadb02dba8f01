// Package testproc re-executes a test binary as a process caught in its
// exit: its main thread gone (the leader a zombie, its command line empty)
// while another thread goes on until its stdin closes. Under load a killed
// or finishing Go process looks like that for a while, its threads leaving
// one by one, the leader often first; kvmnet must still see it as alive
// (ctl.Exiting). Tests only.
package testproc

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// env carries the hold's argument to the re-executed binary.
const env = "KVMNET_TEST_EXIT_LATE"

// ready is what the re-executed binary says once its hold is taken.
const ready = "held\n"

func init() {
	if _, ok := os.LookupEnv(env); ok {
		runtime.LockOSThread() // main stays on the main thread, which Main ends
	}
}

// Main is a TestMain's first call. In a process ExitLate started it takes
// hold(arg), the argument ExitLate was given, says so, and ends the main
// thread alone, while another thread waits for stdin to close, then runs
// the release hold returned and exits 0: it never returns. Anywhere else it
// returns at once.
func Main(hold func(arg string) (release func())) {
	arg, ok := os.LookupEnv(env)
	if !ok {
		return
	}
	release := hold(arg)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		release()
		os.Exit(0)
	}()
	os.Stdout.WriteString(ready)
	_, _, _ = syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0) // this thread only, not the group
}

// Exiting is a process ExitLate started: its leader gone, a thread left.
type Exiting struct {
	Pid   int
	cmd   *exec.Cmd
	stdin io.Closer
}

// ExitLate re-executes the test binary with argv (argv[0] is the name the
// process goes by) and the hold argument arg, and returns once the process
// has taken its hold and its leader has exited. The test's cleanup lets it
// go if the test did not.
func ExitLate(t testing.TB, arg string, argv ...string) *Exiting {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Args = argv
	cmd.Env = append(os.Environ(), env+"="+arg)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &Exiting{Pid: cmd.Process.Pid, cmd: cmd, stdin: stdin}
	t.Cleanup(func() { e.Release(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != ready {
		t.Fatalf("re-executed test binary: %q %v", line, err)
	}
	stat := "/proc/" + strconv.Itoa(e.Pid) + "/stat"
	for deadline := time.Now().Add(5 * time.Second); !leaderGone(stat); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the re-executed test binary's main thread did not exit")
		}
	}
	return e
}

// leaderGone reports whether the process of stat is a zombie leader.
func leaderGone(stat string) bool {
	b, err := os.ReadFile(stat)
	i := bytes.LastIndexByte(b, ')')
	return err == nil && i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// Release lets the process's last thread run its release and exit.
func (e *Exiting) Release() { e.stdin.Close() }

// Wait waits for the process to be reaped; its state is then ProcessState's.
func (e *Exiting) Wait() error { return e.cmd.Wait() }

// ProcessState is the reaped process's state (after Wait).
func (e *Exiting) ProcessState() *os.ProcessState { return e.cmd.ProcessState }
