package ops

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// exitLateEnv makes a re-executed test binary a teardown caught in its exit
// (exitLate).
const exitLateEnv = "KVMNET_TEST_TEARDOWN_EXIT_LATE"

func init() {
	if os.Getenv(exitLateEnv) != "" {
		runtime.LockOSThread() // main stays on the main thread, which exitLate ends
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(exitLateEnv) != "" {
		exitLate()
	}
	os.Exit(m.Run())
}

// exitLate is a kvmnet-teardown whose main thread has exited while another
// thread goes on (holding the network's lock, in the real one) until its
// stdin closes: under load a killed or finishing process's threads leave
// one by one, the leader often first, and it is a zombie until the last.
func exitLate() {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	os.Stdout.WriteString("running\n")
	_, _, _ = syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0) // this thread only, not the group
}

// TestTeardownHolderExiting: doctor names a teardown whose leader thread
// has exited (a zombie leader, its command line empty) while its other
// threads still hold the lock, rather than taking it for gone and saying
// "a kvmnet run".
func TestTeardownHolderExiting(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Args = []string{lifecycle.TeardownProc, "exitlate"}
	cmd.Env = append(os.Environ(), exitLateEnv+"=1")
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
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "running\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	dir := "/proc/" + strconv.Itoa(pid)
	for deadline := time.Now().Add(5 * time.Second); !zombie(dir); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the helper's main thread did not exit")
		}
	}
	if !ctl.Exiting(pid) {
		t.Fatalf("pid %d, its leader gone and a thread running, is not Exiting", pid)
	}
	want := lifecycle.TeardownProc + " pid " + strconv.Itoa(pid)
	if got := teardownHolder("exitlate"); got != want {
		t.Errorf("teardownHolder of a teardown with a zombie leader: %q, want %q", got, want)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if got := teardownHolder("exitlate"); got != "a kvmnet run" {
		t.Errorf("teardownHolder after the teardown was reaped: %q", got)
	}
}
