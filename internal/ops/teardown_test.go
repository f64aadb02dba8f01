package ops

import (
	"os"
	"strconv"
	"testing"

	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/testproc"
)

func TestMain(m *testing.M) {
	// A kvmnet-teardown caught in its exit: its main thread gone, another
	// thread (holding the network's lock, in the real one) going on.
	testproc.Main(func(string) func() { return func() {} })
	os.Exit(m.Run())
}

// TestTeardownHolderExiting: doctor names a teardown whose leader thread
// has exited (a zombie leader, its command line empty) while its other
// threads still hold the lock, rather than taking it for gone and saying
// "a kvmnet run".
func TestTeardownHolderExiting(t *testing.T) {
	e := testproc.ExitLate(t, "", lifecycle.TeardownProc, "exitlate")
	pid := e.Pid
	if !ctl.Exiting(pid) {
		t.Fatalf("pid %d, its leader gone and a thread running, is not Exiting", pid)
	}
	want := lifecycle.TeardownProc + " pid " + strconv.Itoa(pid)
	if got := teardownHolder("exitlate"); got != want {
		t.Errorf("teardownHolder of a teardown with a zombie leader: %q, want %q", got, want)
	}
	e.Release()
	if err := e.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if got := teardownHolder("exitlate"); got != "a kvmnet run" {
		t.Errorf("teardownHolder after the teardown was reaped: %q", got)
	}
}
