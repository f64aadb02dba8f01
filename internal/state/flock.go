package state

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLockTimeout is returned by Lock when another run held the lock for longer than Dir.LockWait.
var ErrLockTimeout = errors.New("timed out waiting for the lock")

// lockPoll is how often a bounded wait retries: flock(2) has no timeout of its
// own, and a held network lock is held for milliseconds (one up or down).
const lockPoll = 5 * time.Millisecond

// flock takes an exclusive flock on f (`flock -x`), waiting at most wait
// (forever when wait is zero).
func flock(f *os.File, wait time.Duration) error {
	if wait <= 0 {
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s (another kvmnet run holds it)", ErrLockTimeout, wait)
		}
		time.Sleep(lockPoll)
	}
}
