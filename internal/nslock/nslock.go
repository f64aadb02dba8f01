// Package nslock is a lock per network namespace that needs no file: an
// abstract unix socket, whose name lives in the namespace, bound by the
// holder. The kernel releases it when its holder dies, even by SIGKILL, so a
// killed helper never wedges the others.
//
// kvmnet locks each network with a file in its state directory; what two
// networks' runs share (the rules of one firewall backend) needs one lock for
// the whole namespace, and that is this.
package nslock

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Lock waits for the lock called name (an abstract socket name without its
// leading NUL, e.g. "@kvmnet-iptables"), up to 30 s, and returns its release.
func Lock(name string) (func(), error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	wait := 100 * time.Microsecond
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := unix.Bind(fd, &unix.SockaddrUnix{Name: name})
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) || time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Millisecond)
	}
}
