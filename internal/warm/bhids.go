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
// yes to the tap's attachment it is wholly root, so that the caller can
// neither signal nor stop it while it holds the network's lock; it sends the
// tap as the caller (so that no root credentials reach the caller's
// socket), keeping only root's saved uid, to unrecord the tap should the
// send fail; once sent, it is the caller for good. A run it hands to the
// engine gets the ids it began with, so that the engine takes the same
// caller. The syscall package's calls apply to every thread of the process.

// becomeRoot makes every id root's and the groups none, and the umask the
// engine's (022), for the part that touches the network's state.
func (b *bridgeRun) becomeRoot() error {
	unix.Umask(0o022)
	if b.who.uid == 0 {
		return nil
	}
	b.root = true
	if err := errors.Join(syscall.Setresgid(0, 0, 0), syscall.Setgroups([]int{}), syscall.Setresuid(0, 0, 0)); err != nil {
		return errCold
	}
	return nil
}

// dropToCaller takes the caller's groups, gid and uid, real and effective,
// keeping root as the saved uid; final then drops that too, for good.
func (b *bridgeRun) dropToCaller(final bool) error {
	if !b.root {
		return nil
	}
	w, saved := b.who, 0
	var err error
	if final {
		saved = w.uid
		err = syscall.Setresuid(w.uid, w.uid, w.uid)
	} else {
		err = errors.Join(syscall.Setgroups(w.groups), syscall.Setresgid(w.gid, w.gid, w.gid), syscall.Setresuid(w.uid, w.uid, 0))
	}
	if ruid, euid, suid := unix.Getresuid(); err != nil || ruid != w.uid || euid != w.uid || suid != saved {
		return errors.New("drop privileges: still uid " + strconv.Itoa(euid))
	}
	return nil
}

// restoreIDs gives the process back the ids, groups and umask it began with,
// before the run goes to the engine. Should that fail, the run must not go
// to the engine, which would take root for the caller: it is an error.
func (b *bridgeRun) restoreIDs() error {
	if !b.root {
		return nil
	}
	w, ids := b.who, b.ids
	_ = syscall.Setresuid(-1, 0, -1) // root again, from the saved uid, if the tap's send failed
	err := errors.Join(syscall.Setgroups(w.groups), syscall.Setresgid(ids[3], ids[4], ids[5]), syscall.Setresuid(ids[0], ids[1], ids[2]))
	r, e, s := unix.Getresuid()
	if err != nil || r != ids[0] || e != ids[1] || s != ids[2] {
		return errors.New("hand over to kvmnet: cannot restore uid " + strconv.Itoa(ids[0]))
	}
	b.root = false
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
