package warm

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// stateDir returns the state directory of the network namespace of s, a
// socket, as state.Open names it, once it and its parent pass state's checks.
// It makes neither: a namespace without one has no warm network.
func stateDir(s *sock) (string, error) {
	cookie, err := unix.GetsockoptUint64(s.fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return "", err
	}
	dir := stateRoot + "/netns-" + strconv.FormatUint(cookie, 10)
	for _, d := range []string{stateRoot, dir} {
		if err := checkDir(d); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// errUnsafeDir is a directory state's checks refuse.
var errUnsafeDir = errors.New("state directory not root's, or writable by others")

// checkDir holds a directory to package state's rule: a directory, not a
// link, owned by root or the caller, writable by no group or other. Once it
// holds, only its owner can add or swap a file in it.
func checkDir(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || (st.Uid != 0 && st.Uid != uint32(os.Geteuid())) || st.Mode&0o022 != 0 {
		return errUnsafeDir
	}
	return nil
}

// lockNetwork takes the network's lock as state.Dir.Lock does, waiting for
// it: the same file, opened the same way, never through a link.
//
//	flock -x /run/kvmnet/netns-COOKIE/NETWORK.lock
func lockNetwork(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return -1, err
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// errTooLong is a file longer than its reader allows.
var errTooLong = errors.New("file too long")

// bufSize is the size of a run's buffer (newBuf): a netlink answer (a
// link's is about 1.2 kB), or a small file.
const bufSize = 8 << 10

// newBuf is a run's one buffer for what it receives or reads and does not
// keep: netlink answers and small files, each done with before the next
// use. A run's time above the Go runtime's start goes as much to page
// faults as to system calls (some 5 µs each here): every new buffer is
// fresh heap the kernel must fault in, where a reused one faults once.
func newBuf() []byte { return make([]byte, bufSize) }

// readSmall reads the file at path, never through a link: at most limit
// bytes, in one read, into buf when it has room (the result is then valid
// until buf's next use). A read of a regular file returns less than asked
// only at its end, and the /proc files read here (sysctls, a command line,
// ip_tables_names) return all they hold in one read that has room for it,
// so a second read to see the end would only cost a system call.
func readSmall(path string, limit int, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := buf
	if len(b) < limit+1 {
		b = make([]byte, limit+1)
	}
	b = b[:limit+1]
	for {
		n, err := unix.Read(fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, err
		case n > limit:
			return nil, errTooLong
		}
		return b[:n], nil
	}
}

// recordPort records tap as the network's port before it is attached, as
// state.Dir.AddPort does: an empty file in NETWORK.ports/.
func (r *run) recordPort() error {
	dir := r.portsDir()
	err := checkDir(dir)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdir(dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		err = checkDir(dir)
	}
	if err != nil {
		return err
	}
	fd, err := unix.Open(dir+"/"+r.tap, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func (r *run) portsDir() string { return r.dir + "/" + r.hot.Network + ".ports" }

// hasPort reports whether tap is recorded as the network's (state.Dir.HasPort).
func (r *run) hasPort() bool {
	var st unix.Stat_t
	return unix.Lstat(r.portsDir()+"/"+r.tap, &st) == nil
}

// anotherPortLive reports whether a port recorded besides tap is still a
// port of the bridge, as the engine's down asks before it tears a network
// down. It stops at the first answer, live or not: a recorded port that is
// gone (its VM was killed) is the engine's to forget, so the run is.
func (r *run) anotherPortLive() (bool, error) {
	fd, err := unix.Open(r.portsDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	buf := r.buf
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return false, err
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil) // leaves out . and ..
		for _, name := range names {
			if name == r.tap {
				continue
			}
			l, err := r.nl.getLink(name)
			return err == nil && l.master == r.br.index, nil
		}
	}
}
