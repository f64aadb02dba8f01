package warm

import (
	"errors"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/selfbin"
)

// The bridge helper front's privileges. It runs with the caller's real ids
// and root's effective and saved uid (setuid root). From the allow list's
// yes to the tap's attachment every thread's uids are root's, so that the
// caller can signal or stop none of them while the network's lock is held
// (syscall.Setresuid, which applies to every thread; it costs as much as
// the rest of the run's system calls together, so it is the only such
// call). Everything else it does on one thread, which the main goroutine
// keeps (LockOSThread), and whose ids alone matter: its gids are root's
// while it makes the port's record (root's group, as the engine's); it
// sends the tap as the caller (so that no root credentials reach the
// caller's socket), keeping root only as its saved uid, to unrecord the tap
// should the send fail; once sent, it is the caller for good. A run it hands
// to the engine gets this thread's ids back as they began, and the exec
// takes them, and no other thread's, so that the engine takes the same caller.

// becomeRoot makes every thread's uids root's, this thread's gids root's,
// and the umask the engine's (022), for the part that touches the network's state.
func (b *bridgeRun) becomeRoot() error {
	unix.Umask(0o022)
	if b.who.uid == 0 {
		return nil
	}
	b.root = true
	if err := errors.Join(syscall.Setresuid(0, 0, 0), setres(unix.SYS_SETRESGID, 0, 0, 0)); err != nil {
		return errCold
	}
	return nil
}

// dropToCaller gives this thread the caller's gid and uid, real and
// effective, keeping root as the saved uid; final then drops that too, for good.
func (b *bridgeRun) dropToCaller(final bool) error {
	if !b.root {
		return nil
	}
	w, saved := b.who, 0
	var err error
	if final {
		saved = w.uid
		err = setres(unix.SYS_SETRESUID, w.uid, w.uid, w.uid)
	} else {
		err = errors.Join(setres(unix.SYS_SETRESGID, w.gid, w.gid, w.gid), setres(unix.SYS_SETRESUID, w.uid, w.uid, 0))
	}
	if ruid, euid, suid := unix.Getresuid(); err != nil || ruid != w.uid || euid != w.uid || suid != saved {
		return errors.New("drop privileges: still uid " + strconv.Itoa(euid))
	}
	return nil
}

// regainRoot makes this thread's effective uid root's again, from its saved
// uid, after dropToCaller(false), to undo what the run made.
func (b *bridgeRun) regainRoot() {
	if b.root {
		_ = setres(unix.SYS_SETRESUID, -1, 0, -1)
	}
}

// restoreIDs gives this thread back the uids and gids it began with, before
// the run goes to the engine. Should that fail, the run must not go to the
// engine, which would take root for the caller: it is an error.
func (b *bridgeRun) restoreIDs() error {
	if !b.root {
		return nil
	}
	ids := b.ids
	b.regainRoot()
	err := errors.Join(setres(unix.SYS_SETRESGID, ids[3], ids[4], ids[5]), setres(unix.SYS_SETRESUID, ids[0], ids[1], ids[2]))
	r, e, s := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if err != nil || r != ids[0] || e != ids[1] || s != ids[2] || rg != ids[3] || eg != ids[4] || sg != ids[5] {
		return errors.New("hand over to kvmnet: cannot restore uid " + strconv.Itoa(ids[0]))
	}
	b.root = false
	return nil
}

// setres is setresuid(2) or setresgid(2) (nr) for the calling thread alone,
// which the kernel's call is; -1 leaves an id as it is.
func setres(nr uintptr, r, e, s int) error {
	if _, _, errno := unix.RawSyscall(nr, uintptr(r), uintptr(e), uintptr(s)); errno != 0 {
		return errno
	}
	return nil
}

// bridgeEngine hands the run to the kvmnet binary as kvmnet-bridge-helper:
// the same arguments and descriptors (QEMU's socket among them), the ids the
// run began with, and an environment of PATH alone. It returns only when it
// could not, with the exit code of a failed run.
func bridgeEngine(args []string) int {
	exe, err := engineBinary()
	if err == nil {
		argv := append([]string{"kvmnet-" + BridgeHelperVerb.Name}, args[min(1, len(args)):]...)
		err = unix.Exec(exe, argv, []string{"PATH=" + safePath})
		err = errors.New("run " + exe + ": " + err.Error())
	} else if _, ok := err.(*selfbin.NotFoundError); ok {
		err = errors.New(err.Error() + " (it sets networks up)")
	}
	logLine(BridgeHelperVerb, logErr, err.Error())
	return 1
}

// engineBinary is selfbin.Kvmnet, for a setuid program: the binary found
// must also lie in directories only root can change (a root-owned sticky
// directory such as /tmp counts: no one else can swap what root put in it),
// links resolved, so that a caller who could link the helper into a
// directory of theirs still cannot choose what runs as root.
func engineBinary() (string, error) {
	exe, err := selfbin.Kvmnet()
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", err
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Lstat(dir, &st); err != nil {
			return "", errors.New(selfbin.Name + " binary's directory " + dir + ": " + err.Error())
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0) {
			return "", errors.New(real + ": directory " + dir + " is not root's alone: refused")
		}
		if dir == "/" {
			return real, nil
		}
	}
}
