package state

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAdopt: a lock handed to a child through a descriptor of the same open
// file description is held by the child alone once the parent lets go, and
// released with the child's; any other descriptor takes the lock anew.
func TestAdopt(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	other := Dir{Path: d.Path, LockWait: 20 * time.Millisecond}
	lk, err := d.Lock("net")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(lk.File().Fd())) // what a child gets as ExtraFiles
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := other.Adopt("net", fd)
	if err != nil {
		t.Fatalf("adopt the held lock through its own open file: %v", err)
	}
	lk.Unlock()
	if _, err := other.Lock("net"); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("lock while the adopter holds it: %v, want %v", err, ErrLockTimeout)
	}
	adopted.Unlock()
	again, err := other.Lock("net")
	if err != nil {
		t.Fatalf("lock once the adopter let go: %v", err)
	}
	again.Unlock()

	f, err := os.CreateTemp(d.Path, "other")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, fd := range []int{int(f.Fd()), 1000} { // another file; no descriptor at all
		taken, err := d.Adopt("net", fd)
		if err != nil {
			t.Fatalf("adopt through descriptor %d: %v", fd, err)
		}
		if _, err := other.Lock("net"); !errors.Is(err, ErrLockTimeout) {
			t.Errorf("adopt through descriptor %d did not take the lock: %v", fd, err)
		}
		taken.Unlock()
	}
}
