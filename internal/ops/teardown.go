package ops

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/state"
)

// A last down hands the rest of its teardown (the daemon's exit, the rules,
// the bridge's deletion) to a child that holds the network's lock until the network is
// gone: tens of milliseconds, longer on a loaded host. Its record says
// TearingDown all that time, so a record alone cannot tell that child at work
// from one that was killed. The lock can: the kernel drops an flock with its
// last holder.
const (
	teardownInProgress = "in progress" // the lock is held: the teardown is at work
	teardownCutShort   = "cut short"   // no one holds the lock: its child was killed
)

// teardownWait bounds how long doctor waits for a teardown in progress, so
// that `natdown; kvmnet doctor` sees the network gone rather than half gone.
const teardownWait = 3 * time.Second

// teardownState says whether network name's record is a last down's
// teardown, and whether it is in progress or was cut short ("" when neither).
func (h Host) teardownState(name string) (string, error) {
	rec, ok, err := h.Dir.Load(name)
	if err != nil || !ok {
		return "", err
	}
	return h.teardownOf(name, rec)
}

// teardownOf is teardownState for a record the caller has just read.
func (h Host) teardownOf(name string, rec state.Network) (string, error) {
	if !rec.TearingDown {
		return "", nil
	}
	busy, err := h.Dir.Busy(name)
	switch {
	case err != nil:
		return "", err
	case busy:
		return teardownInProgress, nil
	}
	return teardownCutShort, nil
}

// awaitTeardown is teardownState after waiting, at most wait, for a
// teardown in progress to finish: "" once it has.
func (h Host) awaitTeardown(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		st, err := h.teardownState(name)
		if err != nil || st != teardownInProgress || time.Now().After(deadline) {
			return st, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// teardownFinding is doctor's word on a teardown still at work after
// teardownWait: worth knowing, not a fault.
func (h Host) teardownFinding(name string) Finding {
	rec, _, _ := h.Dir.Load(name)
	ev := fmt.Sprintf("%s holds %s; %s: tearing down, about to %s", teardownHolder(name),
		h.Dir.File(name, ".lock"), h.Dir.File(name, ".json"), rec.Doing)
	return Finding{Network: name, Info: true,
		Problem:  "a last down's teardown is in progress: the network is going away",
		Evidence: ev, Fix: "none needed: it finishes by itself (kvmnet gc waits for it)"}
}

// teardownHolder names the process finishing network name's last down: a
// kvmnet binary run as lifecycle.TeardownProc for it, in this namespace.
func teardownHolder(name string) string {
	want := []byte(lifecycle.TeardownProc + "\x00" + name + "\x00")
	pid, _ := procHere(func(dir string) bool {
		cmdline, err := os.ReadFile(dir + "/cmdline")
		return err == nil && bytes.Equal(cmdline, want)
	})
	if pid == "" {
		return "a kvmnet run"
	}
	return lifecycle.TeardownProc + " pid " + pid
}
