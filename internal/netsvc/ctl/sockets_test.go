package ctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestBindPortTaken: a DNS port another program holds fails Bind at once,
// naming the socket, and leaves nothing open or locked, so that the up that
// asked fails with nothing left and a later one can bind.
func TestBindPortTaken(t *testing.T) {
	ns := testns.New(t)
	c := testConfig()
	c.DHCP = false // no bridge in this namespace
	c.LeaseFile = filepath.Join(t.TempDir(), "test.leases")
	err := ns.Do(func() error {
		squatter, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(squatter, &unix.SockaddrInet4{Port: dnsPort}); err != nil {
			unix.Close(squatter)
			return err
		}
		_, bindErr := Bind(c)
		unix.Close(squatter)
		if bindErr == nil || !errors.Is(bindErr, unix.EADDRINUSE) || !strings.Contains(bindErr.Error(), "dns listen udp 192.168.100.1:53") {
			t.Errorf("Bind beside a program on udp port 53: %v, want EADDRINUSE naming dns listen udp 192.168.100.1:53", bindErr)
		}
		s, err := Bind(c) // the lease file's lock was let go
		if err != nil {
			return err
		}
		defer s.Close()
		if len(s.Files()) != 3 {
			t.Errorf("Bind without DHCP: %d files, want the lock and DNS's udp and tcp", len(s.Files()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBindLeaseFileADirectory: a lease file the daemon could never replace
// fails Bind, naming it.
func TestBindLeaseFileADirectory(t *testing.T) {
	c := testConfig()
	c.DHCP, c.DNS = false, false
	c.LeaseFile = filepath.Join(t.TempDir(), "test.leases")
	if err := os.Mkdir(c.LeaseFile, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Bind(c); err == nil || err.Error() != "lease file "+c.LeaseFile+": is a directory" {
		t.Errorf("Bind with a directory for a lease file: %v", err)
	}
}
