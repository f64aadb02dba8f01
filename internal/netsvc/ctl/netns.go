package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` names namespaces.
const netnsDir = "/run/netns"

// LeaseFileInNetns returns the lease file that the network of path (the
// configured lease_dir/NAME.leases) uses in the network namespace of the
// calling thread. In the host's namespace it is path itself, stable across
// reboots. Elsewhere, a network of the same name is another network with
// other guests, so it gets NAME@NETNS.leases, NETNS being the namespace's name
// under /run/netns, or else cookie-N of its netns cookie (unique while the
// host runs). The host's namespace is PID 1's (see hostNetns); when that
// cannot be known, path is kept, and the lock on the lease file still keeps a
// second daemon off it with a clear error.
func LeaseFileInNetns(path string) (string, error) {
	self, err := nsID("/proc/thread-self/ns/net")
	if err != nil {
		return "", fmt.Errorf("lease file for this network namespace: %w", err)
	}
	host, known := hostNetns()
	if known && host == self {
		return path, nil
	}
	tag, err := netnsName(self)
	if err != nil {
		return "", fmt.Errorf("lease file for this network namespace: %w", err)
	}
	if tag == "" {
		if !known {
			return path, nil
		}
		if tag, err = netnsCookie(self); err != nil {
			return "", fmt.Errorf("lease file for this network namespace: %w", err)
		}
	}
	dir, base := filepath.Split(path)
	return filepath.Join(dir, strings.TrimSuffix(base, ".leases")+"@"+tag+".leases"), nil
}

// hostNetns returns PID 1's network namespace. Reading it takes ptrace
// rights over PID 1 that a helper with only CAP_NET_ADMIN may lack; kthreadd
// (PID 2 when this is the host's PID namespace) lives in the same namespace and
// is readable by any root.
func hostNetns() (nsIdent, bool) {
	if id, err := nsID("/proc/1/ns/net"); err == nil {
		return id, true
	}
	if comm, err := os.ReadFile("/proc/2/comm"); err == nil && strings.TrimSpace(string(comm)) == "kthreadd" {
		if id, err := nsID("/proc/2/ns/net"); err == nil {
			return id, true
		}
	}
	return nsIdent{}, false
}

// nsIdent identifies a namespace: the device and inode of its nsfs file.
type nsIdent struct{ dev, ino uint64 }

// nsID returns the identity of the namespace file at path.
func nsID(path string) (nsIdent, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsIdent{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return nsIdent{dev: st.Dev, ino: st.Ino}, nil
}

// netnsName returns the name of the namespace self under /run/netns, or ""
// when it has none fit for a file name.
func netnsName(self nsIdent) (string, error) {
	names, err := netnsNames(self)
	for _, n := range names {
		if fileSafe(n) {
			return n, nil
		}
	}
	return "", err
}

// NetnsNames lists the names `ip netns` gives the calling thread's network
// namespace (its files in /run/netns); none for an unnamed one.
//
//	ip netns identify
func NetnsNames() ([]string, error) {
	self, err := nsID("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	return netnsNames(self)
}

// netnsNames lists the names of namespace self under /run/netns.
func netnsNames(self nsIdent) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", netnsDir, err)
	}
	var names []string
	for _, e := range ents {
		if id, err := nsID(filepath.Join(netnsDir, e.Name())); err == nil && id == self {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// netnsCookie names the calling thread's namespace by its cookie.
func netnsCookie(self nsIdent) (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("socket for the netns cookie: %w", err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil { // before Linux 5.14: the inode, unique while the namespace lives
		return "ino-" + strconv.FormatUint(self.ino, 10), nil
	}
	return "cookie-" + strconv.FormatUint(cookie, 10), nil
}

// fileSafe reports whether a namespace name can go into a file name as is.
func fileSafe(s string) bool {
	if s == "" || s[0] == '.' || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// FollowLeaseFile moves the lease file used, which a network's daemon that
// has now exited was given (its configuration's lease_file), to the name
// LeaseFileInNetns gives that network's leases in the calling thread's
// namespace, so that its guests keep their addresses across a release that
// names the file otherwise: releases before per-namespace lease files used
// NAME.leases in every namespace. It moves nothing when the names agree, when
// used is gone, or when the new name has leases of its own, unless used is
// the older daemon's own and newer (a downgrade ran the network since:
// olderleases.go). It returns the new name when it moved the file.
//
//	mv lease_dir/NAME.leases lease_dir/NAME@NETNS.leases
func FollowLeaseFile(used string) (string, error) {
	if used == "" {
		return "", nil
	}
	dir, base := filepath.Split(used)
	name, _, _ := strings.Cut(strings.TrimSuffix(base, ".leases"), "@") // a network's name has no '@'
	want, err := LeaseFileInNetns(filepath.Join(dir, name+".leases"))
	if err != nil || want == used {
		return "", err
	}
	if _, err := os.Lstat(want); err == nil && !olderDaemonsFile(used, want) {
		return "", nil
	}
	if fi, err := os.Lstat(used); err != nil || !fi.Mode().IsRegular() {
		return "", nil
	}
	if err := os.Rename(used, want); err != nil {
		return "", fmt.Errorf("move lease file %s to %s: %w", used, want, err)
	}
	return want, nil
}
