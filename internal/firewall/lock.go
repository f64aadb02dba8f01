package firewall

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// tableLock names the lock that serialises kvmnet's writers of its table
// across networks. Callers lock a network, so two ups of one network never
// meet here; two networks' ups do, and Ensure rebuilds the base chains from
// what it read, so without this one could drop the other's jumps, and two
// last downs could each leave the table to the other.
//
// It is an abstract unix socket: its name lives in the network namespace
// (one lock per namespace, as the table is), it needs no file, and the
// kernel releases it when its holder dies, even by SIGKILL.
const tableLock = "@kvmnet-nftables-table"

// lockTable waits for the table lock, up to 30 s, and returns its release.
func lockTable() (func(), error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock table inet %s: %w", tableName, err)
	}
	wait := 100 * time.Microsecond
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := unix.Bind(fd, &unix.SockaddrUnix{Name: tableLock})
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) || time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("lock table inet %s: %w", tableName, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Millisecond)
	}
}
