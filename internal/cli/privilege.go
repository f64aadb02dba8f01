package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/config"
)

// What the setuid bridge helper does about the user who runs it.

// safePath is the only PATH a privileged kvmnet has: iptables and nft are
// found there, never where the caller points.
const safePath = "/usr/sbin:/usr/bin:/sbin:/bin"

// caller is who runs the helper: its real ids and groups, which the kernel
// keeps across a setuid exec.
type caller struct {
	uid, gid int
	groups   []int
}

func (c caller) String() string {
	if u, err := user.LookupId(strconv.Itoa(c.uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, c.uid)
	}
	return fmt.Sprintf("uid %d", c.uid)
}

// secureStart takes the caller's ids and makes the process safe to run for
// them. Before main, Go's runtime has, for a setuid exec (AT_SECURE), opened
// /dev/null on any of fds 0-2 the caller closed and forced GOTRACEBACK=none;
// it has also read GODEBUG, GOGC, GOMEMLIMIT and GOMAXPROCS. So here: fds
// 0-2 once more (for a run without AT_SECURE, e.g. with file capabilities),
// every other inherited fd close-on-exec (iptables and the daemon inherit
// none), the environment cleared (which also resets GODEBUG's settings to the
// defaults), PATH fixed, and the GC and scheduler settings back to defaults.
func secureStart() caller {
	safeStdFDs()
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	scrubEnv()
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(1<<63 - 1)
	runtime.SetDefaultGOMAXPROCS()
	groups, _ := unix.Getgroups()
	return caller{uid: unix.Getuid(), gid: unix.Getgid(), groups: groups}
}

// scrubEnv leaves the environment PATH=safePath and nothing else.
func scrubEnv() {
	os.Clearenv()
	os.Setenv("PATH", safePath)
}

// safeStdFDs opens /dev/null on each of fds 0-2 that is closed, so that no
// file the helper opens becomes its stdout or stderr.
func safeStdFDs() {
	for fd := 0; fd <= 2; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); errors.Is(err, unix.EBADF) {
			if nfd, err := unix.Open(os.DevNull, unix.O_RDWR, 0); err == nil && nfd != fd {
				unix.Close(nfd) // fds below it are open: nothing else can take fd
			}
		}
	}
}

// loadRootConfig reads the configuration as a setuid program may: only while
// root owns the file and every directory above it and no one else can write
// any of them, and never through a symbolic link. A missing file is the
// built-in configuration, as for the other helpers.
func loadRootConfig(path string) (*config.File, error) {
	f, _, err := loadRootConfigStamp(path)
	return f, err
}

// loadRootConfigStamp is loadRootConfig, with the file's config.Stamp as it
// was read (taken from the descriptor, not the path, so that it is the
// stamp of what was parsed).
func loadRootConfigStamp(path string) (*config.File, string, error) {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		err := unix.Lstat(dir, &st)
		if err == nil {
			err = rootOnly(st, unix.S_IFDIR)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, "", fmt.Errorf("config directory %s: %w", dir, err)
		}
		if dir == "/" {
			break
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		f, err := config.Parse(path, nil)
		return f, path + " none", err
	}
	if err != nil {
		return nil, "", fmt.Errorf("read config %s: %w", path, err)
	}
	fh := os.NewFile(uintptr(fd), path)
	defer fh.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, "", fmt.Errorf("read config %s: %w", path, err)
	}
	if err := rootOnly(st, unix.S_IFREG); err != nil {
		return nil, "", fmt.Errorf("config %s: %w", path, err)
	}
	b, err := io.ReadAll(io.LimitReader(fh, config.MaxFileSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read config %s: %w", path, err)
	}
	stamp := fmt.Sprintf("%s %d:%d:%d:%d.%d:%d.%d", path, st.Dev, st.Ino, st.Size, st.Ctim.Sec, st.Ctim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
	f, err := config.Parse(path, b)
	return f, stamp, err
}

// errNotRootOnly marks a file or directory someone other than root could have written.
var errNotRootOnly = errors.New("refused: a setuid helper reads only what root alone can write")

func rootOnly(st unix.Stat_t, kind uint32) error {
	switch {
	case st.Mode&unix.S_IFMT != kind:
		want := "a regular file"
		if kind == unix.S_IFDIR {
			want = "a directory"
		}
		return fmt.Errorf("not %s: %w", want, errNotRootOnly)
	case st.Uid != 0:
		return fmt.Errorf("owned by uid %d: %w", st.Uid, errNotRootOnly)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("writable by group or others (mode %04o): %w", st.Mode&0o7777, errNotRootOnly)
	}
	return nil
}

// accounts resolves the names of an allow list.
type accounts interface {
	userID(name string) (int, bool)
	groupID(name string) (int, bool)
}

// systemAccounts reads /etc/passwd and /etc/group (Go's own reader: a static
// binary consults no NSS module, so LDAP or sssd names are not found).
type systemAccounts struct{}

func (systemAccounts) userID(name string) (int, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	id, err := strconv.Atoi(u.Uid)
	return id, err == nil
}

func (systemAccounts) groupID(name string) (int, bool) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, false
	}
	id, err := strconv.Atoi(g.Gid)
	return id, err == nil
}

// errNotAllowed marks a caller the network's allow list refuses.
var errNotAllowed = errors.New("not allowed")

// refusal is a caller refused by an allow list: a usage error (exit 2).
type refusal struct{ msg string }

func (e refusal) Error() string { return e.msg }
func (e refusal) Is(target error) bool {
	return target == errNotAllowed || target == errUsage
}

// permitted checks the caller against network n's allow list: root always
// may; a "user" entry matches the caller's real uid, an "@group" entry its
// real gid or one of its supplementary groups, as the kernel has them (a user
// added to a group gets it at their next login, as for /dev/kvm).
func permitted(n config.Net, who caller, acc accounts) error {
	if who.uid == 0 {
		return nil
	}
	for _, a := range n.Allow {
		if g, isGroup := a.Group(); isGroup {
			if gid, ok := acc.groupID(g); ok && (gid == who.gid || slices.Contains(who.groups, gid)) {
				return nil
			}
		} else if uid, ok := acc.userID(string(a)); ok && uid == who.uid {
			return nil
		}
	}
	why := "its allow list is empty: only root may"
	if len(n.Allow) > 0 {
		list := make([]string, len(n.Allow))
		for i, a := range n.Allow {
			list[i] = strconv.Quote(string(a))
		}
		why = fmt.Sprintf("not in its allow list [%s]", strings.Join(list, ", "))
	}
	return refusal{fmt.Sprintf("network %s: %s %s: %s (allow = [...] in %s; group changes take effect at the next login)",
		n.Name, who, errNotAllowed, why, config.DefaultPath)}
}

// becomeRoot makes every id root (real, effective, saved; groups none) for
// the part that changes the host: the caller can then neither signal the
// helper nor the daemon and iptables it starts, and those run as root with
// no trace of the caller's groups. It needs effective root, which the setuid
// bit gives (file capabilities would not do: see docs/security.md, "Why setuid root").
func becomeRoot() error {
	if os.Geteuid() != 0 {
		return usagef("needs root: install it setuid root (make install does)")
	}
	// The syscall package's calls apply to every thread of the process.
	if err := errors.Join(syscall.Setresgid(0, 0, 0), syscall.Setgroups([]int{}), syscall.Setresuid(0, 0, 0)); err != nil {
		return fmt.Errorf("become root: %w", err)
	}
	return rootsProcess()
}

// rlimits is the number of resource limits Linux has (RLIM_NLIMITS).
const rlimits = 16

// rootsProcess gives the process what the caller chose and root's own
// processes would not have, so that the DHCP/DNS daemon and iptables it
// starts inherit none of it: the resource limits of init (a user's tiny
// RLIMIT_NOFILE would cripple a daemon other users' VMs rely on), umask 022,
// nice 0, and / as the working directory. A hard limit the caller lowered
// comes back only where root may raise one (CAP_SYS_RESOURCE, which some
// containers withhold); the soft limit then goes as high as the hard one.
func rootsProcess() error {
	var errs []error
	for r := 0; r < rlimits; r++ {
		if err := initsLimit(r); err != nil {
			errs = append(errs, err)
		}
	}
	unix.Umask(0o022)
	errs = append(errs, niceZero(), unix.Chdir("/"))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset the caller's process settings: %w", err)
	}
	return nil
}

// niceZero sets the nice value of every thread to 0: Linux keeps it per
// thread, and a child inherits the one of the thread that forked it.
func niceZero() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list threads: %w", err)
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("set nice of thread %d: %w", tid, err)
			}
		}
	}
	return nil
}

// initsLimit sets resource limit r to init's, or as near as root may.
// syscall's Setrlimit, not unix's: for RLIMIT_NOFILE it also stops os/exec
// from handing children the soft limit the process started with.
func initsLimit(r int) error {
	var want, have syscall.Rlimit
	if err := unix.Prlimit(1, r, nil, (*unix.Rlimit)(&want)); err != nil {
		return fmt.Errorf("read init's limit %d: %w", r, err)
	}
	if err := syscall.Getrlimit(r, &have); err != nil {
		return fmt.Errorf("read limit %d: %w", r, err)
	}
	err := syscall.Setrlimit(r, &want)
	if errors.Is(err, unix.EPERM) && want.Max > have.Max {
		want.Max = have.Max
		want.Cur = min(want.Cur, want.Max)
		err = syscall.Setrlimit(r, &want)
	}
	if err != nil {
		return fmt.Errorf("set limit %d: %w", r, err)
	}
	return nil
}

// dropTo gives up root for good: the caller's groups, gid and uid, real,
// effective and saved. What follows (sending the tap) needs no privilege.
func dropTo(who caller) error {
	if os.Geteuid() != 0 || who.uid == 0 {
		return nil
	}
	if err := errors.Join(syscall.Setgroups(who.groups), syscall.Setresgid(who.gid, who.gid, who.gid), syscall.Setresuid(who.uid, who.uid, who.uid)); err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	if os.Geteuid() != who.uid {
		return fmt.Errorf("drop privileges: still uid %d", os.Geteuid())
	}
	return nil
}
