package netsvc

import (
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// resolvCheckEvery is how often, at most, a query makes the forwarder stat
// resolv.conf: a change takes effect from the first query a second after it,
// and an idle daemon does nothing at all (no timer, no inotify watch that a
// replaced file or a bind mount would leave stale).
const resolvCheckEvery = time.Second

// resolvConfPath is the resolv.conf of the daemon's network namespace: the
// one `ip netns exec NAME` puts over /etc/resolv.conf when the namespace is
// named NAME (in /run/netns) and /etc/netns/NAME/resolv.conf exists, else
// /etc/resolv.conf. It names the file itself, not the bind mount: a file
// replaced by rename would leave the mount on the old one.
func resolvConfPath() string {
	names, _ := ctl.NetnsNames()
	for _, name := range names {
		p := filepath.Join("/etc/netns", name, "resolv.conf")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/etc/resolv.conf"
}

// fileSig tells a changed file: rewritten in place (size, mtime, ctime) or
// replaced (device, inode).
type fileSig struct {
	dev, ino, size uint64
	mtime, ctime   unix.Timespec
}

func sigOf(path string) fileSig {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return fileSig{}
	}
	return fileSig{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim}
}

// resolvFollower reads a resolv.conf's nameservers again when it changes.
type resolvFollower struct {
	path string
	// keep filters the servers read (drops the network's own gateway).
	keep func([]string) []string
	log  *slog.Logger

	mu   sync.Mutex
	next time.Time
	sig  fileSig
}

// newResolvFollower reads path's servers now and returns them with the
// follower that notices later changes.
func newResolvFollower(path string, keep func([]string) []string, log *slog.Logger) (*resolvFollower, []string) {
	f := &resolvFollower{path: path, keep: keep, log: log, sig: sigOf(path)}
	servers, err := resolvConfServers(path)
	if err != nil {
		log.Warn("dns: no upstream from "+path+"; names not ours get SERVFAIL until it has one", "err", err.Error())
	}
	return f, keep(servers)
}

// changed reports the servers of the file when it changed since the last
// look, which is at most once per resolvCheckEvery. A file that is gone or
// names no server keeps the upstreams as they were: it is most likely being
// rewritten.
func (f *resolvFollower) changed(now time.Time) ([]string, bool) {
	if !f.mu.TryLock() {
		return nil, false // another query is looking
	}
	defer f.mu.Unlock()
	if now.Before(f.next) {
		return nil, false
	}
	f.next = now.Add(resolvCheckEvery)
	sig := sigOf(f.path)
	if sig == f.sig {
		return nil, false
	}
	f.sig = sig
	servers, err := resolvConfServers(f.path)
	if err != nil {
		f.log.Warn("dns: "+f.path+" changed and names no server; upstreams kept", "err", err.Error())
		return nil, false
	}
	servers = f.keep(servers)
	f.log.Info("dns: "+f.path+" changed", "upstreams", servers)
	return servers, true
}
