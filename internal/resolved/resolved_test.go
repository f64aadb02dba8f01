package resolved

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAbsent: with no system bus socket, or a socket no daemon listens on
// (left by a bus that died), Register and Revert do nothing and say so.
// It runs in a mount namespace of its own, over a tmpfs /run.
func TestAbsent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	done := make(chan error)
	go func() { done <- inPrivateRun(t) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// inPrivateRun runs the checks on a thread of their own, in a private mount
// namespace; the thread is never given back (it dies with the goroutine).
func inPrivateRun(t *testing.T) error {
	runtime.LockOSThread() // never unlocked: the thread dies with the goroutine, leaving its namespace
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, ""); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(systemBus), 0o755); err != nil { // inside the tmpfs
		return err
	}
	if err := Register(1, []netip.Addr{netip.MustParseAddr("10.0.0.1")}, "kvm"); !errors.Is(err, ErrAbsent) {
		return errors.New("no socket: Register: " + errText(err))
	}
	l, err := net.Listen("unix", systemBus)
	if err != nil {
		return err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the socket file stays, no one listens
	if err := Register(1, []netip.Addr{netip.MustParseAddr("10.0.0.1")}, "kvm"); !errors.Is(err, ErrAbsent) {
		return errors.New("dead socket: Register: " + errText(err))
	}
	if err := Revert(1); err != nil {
		return errors.New("dead socket: Revert: " + errText(err))
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
