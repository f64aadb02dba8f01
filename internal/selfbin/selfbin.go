// Package selfbin finds and starts kvmnet's own binaries: the kvmnet binary,
// for the tap scripts' fronts (package warm) to hand a run to the engine and
// for the DHCP/DNS daemon to start `kvmnet gc`; and the daemon's,
// kvmnet-netsvc, for an up to start it. It links nothing but the standard
// library's smallest packages (no fmt), because the fronts must start as
// fast as an empty program.
package selfbin

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Name is the kvmnet binary's name.
const Name = "kvmnet"

// Installed is where a package installs the kvmnet binary.
const Installed = "/usr/bin/kvmnet"

// DaemonName is the DHCP/DNS daemon's binary's name.
const DaemonName = "kvmnet-netsvc"

// InstalledDaemon is where a package installs the daemon's binary: beside
// the tap scripts, as it is no command of its own.
const InstalledDaemon = "/usr/libexec/kvmnet-netsvc"

// Kvmnet returns the kvmnet binary of this installation: next to the running
// binary first (bin/ of a build, or wherever tests put them all), then in
// ../bin relative to it (installed: /usr/libexec/kvmnet-natup and
// /usr/bin/kvmnet), so that a helper gets the kvmnet of its own version, then
// at /usr/bin/kvmnet. Never in PATH: a caller's environment must not choose
// what a privileged helper runs. The running binary is /proc/self/exe, which
// the caller cannot fake, and the one found must pass Check; one that does
// not is an error, not skipped. A binary found nowhere is a *NotFoundError.
func Kvmnet() (string, error) { return find(Name, "bin", Installed) }

// Daemon returns the daemon's binary of this installation as Kvmnet finds
// kvmnet: next to the running binary, then in ../libexec relative to it
// (installed: /usr/bin/kvmnet and /usr/libexec/kvmnet-netsvc), then at
// /usr/libexec/kvmnet-netsvc.
func Daemon() (string, error) { return find(DaemonName, "libexec", InstalledDaemon) }

func find(name, sibling, installed string) (string, error) {
	self, err := os.Executable() // /proc/self/exe: kvmnet-natup@lab gives kvmnet-natup
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(self)
	there := filepath.Join(filepath.Dir(dir), sibling)
	for _, p := range []string{filepath.Join(dir, name), filepath.Join(there, name), installed} {
		err := Check(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", &NotFoundError{Name: name, Self: self, Sibling: there, Installed: installed}
}

// NotFoundError says where Kvmnet or Daemon looked.
type NotFoundError struct {
	Name      string // the binary looked for
	Self      string // the running binary, beside which it looked first
	Sibling   string // the ../bin or ../libexec it looked in next
	Installed string // where a package installs it
}

func (e *NotFoundError) Error() string {
	return e.Name + " binary not found next to " + e.Self + ", in " + e.Sibling + " or at " + e.Installed
}

// Is makes a NotFoundError an fs.ErrNotExist.
func (e *NotFoundError) Is(target error) bool { return target == fs.ErrNotExist }

// Start starts exe, one of these binaries, with argv and the descriptors
// files (0, 1, 2, ...) in a session of its own, with this process's
// environment, in /, and returns its pid: the caller reaps it, or leaves it
// to init. By syscall.StartProcess, not os.StartProcess: a process's first
// os.StartProcess first forks a child that only exits, to learn whether the
// kernel gives pidfds (0.3 ms here, on a cold up's or a last down's path).
func Start(exe string, argv []string, files []uintptr) (int, error) {
	return StartEnv(exe, argv, os.Environ(), files)
}

// StartEnv is Start with the environment env.
func StartEnv(exe string, argv, env []string, files []uintptr) (int, error) {
	pid, _, err := syscall.StartProcess(exe, argv, &syscall.ProcAttr{
		Dir: "/", Env: env, Files: files,
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, &os.PathError{Op: "fork/exec", Path: exe, Err: err}
	}
	return pid, nil
}

// Check reports why path is not a program a privileged kvmnet may run: it
// must be a regular executable file (links followed), owned by root or the
// caller, and writable by nobody else, so that no other user can have put
// or changed it. A missing file is an error wrapping fs.ErrNotExist.
func Check(path string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	switch {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Mode&0o111 == 0:
		return errors.New(path + ": not an executable file")
	case st.Uid != 0 && st.Uid != uint32(os.Geteuid()):
		return errors.New(path + ": owned by uid " + strconv.FormatUint(uint64(st.Uid), 10) + ", not root: refused")
	case st.Mode&0o022 != 0:
		return errors.New(path + ": writable by group or others (mode " + Octal(st.Mode&0o7777) + "): refused")
	}
	return nil
}

// Octal formats a file mode as %04o does.
func Octal(mode uint32) string {
	s := strconv.FormatUint(uint64(mode), 8)
	for len(s) < 4 {
		s = "0" + s
	}
	return s
}
