package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/safefile"
)

// Busy reports whether another process holds the lock called name right now:
// a run under way, or the child a last down left its teardown to. It never
// waits, makes no lock file and needs no write access, so an unprivileged
// `kvmnet status` can ask.
//
//	flock -n -x /run/kvmnet/netns-COOKIE/NAME.lock true
func (d Dir) Busy(name string) (bool, error) {
	f, err := safefile.Open(filepath.Join(d.Path, name+".lock"), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open lock: %w", err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", name, err)
	}
	return false, nil // closing f lets go of the lock just taken
}
