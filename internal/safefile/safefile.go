// Package safefile opens kvmnet's run-time files (state records, locks, the
// DHCP/DNS daemon's configuration, pid file and log) without following a
// symbolic link in their last component, so that a link planted in a state
// directory can never make a root helper truncate, append to or read a file
// of someone else's choosing. The directories themselves are checked once,
// by their owner and mode, by package state; inside a directory only its
// owner can write, nothing can swap a file between a check and its use.
package safefile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kvmnet/kvmnet/internal/selfbin"
)

// ErrSymlink means a file that must be a plain file is a symbolic link.
var ErrSymlink = errors.New("is a symbolic link, refused")

// nofollow turns the kernel's ELOOP for an O_NOFOLLOW open of a link into ErrSymlink.
func nofollow(path string, err error) error {
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("%s %w", path, ErrSymlink)
	}
	return err
}

// Open opens path with flag (os.O_*), adding O_NOFOLLOW; os.OpenFile adds O_CLOEXEC.
func Open(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return nil, nofollow(path, err)
	}
	return f, nil
}

// OpenDir opens the directory path for reading, refusing a symbolic link.
func OpenDir(path string) (*os.File, error) {
	f, err := Open(path, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if errors.Is(err, syscall.ENOTDIR) { // what O_DIRECTORY|O_NOFOLLOW gives for a link, even to a directory
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s %w", path, ErrSymlink)
		}
	}
	return f, err
}

// ReadFile reads path, at most limit bytes of it; a longer file is an error.
// Run-time files are small: a limit keeps a planted huge file from costing memory.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: longer than %d bytes", path, limit)
	}
	return b, nil
}

// WriteAtomic writes b to path through a new temporary file beside it
// (O_EXCL, so never an existing file or link) renamed over path, so a reader
// sees the old or the new contents, never a mix, and a link at path is
// replaced, not followed.
func WriteAtomic(path string, b []byte, perm os.FileMode) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp"+hex.EncodeToString(rnd[:]))
	f, err := Open(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Executable reports why path is not a program a privileged kvmnet may run:
// see selfbin.Check, which it is.
func Executable(path string) error { return selfbin.Check(path) }
