package testhost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Firewalld is a real firewalld (its nftables backend, Debian's shipped
// configuration, zone public) with a D-Bus system bus of its own, started by
// hand in the host's network namespace and a mount namespace of theirs:
// there /run is a tmpfs (the bus's socket, /run/firewalld), with the
// machine's /run/kvmnet bound in, so that kvmnet's state stays where the
// test's cleanup finds it; firewalld's /etc/firewalld is a copy
// (--system-config) and its shipped zones a copy too (--default-config).
// Programs that talk to it over D-Bus (firewall-cmd, and kvmnet's helpers,
// which set a bridge's zone) run in that mount namespace: Run.
type Firewalld struct {
	h      *Host
	holder int    // the process that holds the mount namespace
	Dir    string // the configuration's copies and the logs
}

// StartFirewalld starts the bus and firewalld, without the shipped zones
// named in drop ("libvirt"), and waits until firewalld answers
// (`firewall-cmd --state`). It skips the test when firewalld is not
// installed (scripts/deps.sh installs it).
func (h *Host) StartFirewalld(drop ...string) *Firewalld {
	h.T.Helper()
	if _, err := exec.LookPath("firewalld"); err != nil {
		h.T.Skip("firewalld not installed")
	}
	dir := h.T.TempDir()
	for _, c := range [][]string{
		{"mkdir", "-p", dir + "/etc", dir + "/usr", dir + "/hostrun"},
		{"cp", "-a", "/etc/firewalld/.", dir + "/etc/"},
		{"cp", "-a", "/usr/lib/firewalld/.", dir + "/usr/"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			h.T.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	for _, z := range drop {
		if err := os.Remove(filepath.Join(dir, "usr", "zones", z+".xml")); err != nil {
			h.T.Fatal(err)
		}
	}
	script := fmt.Sprintf(`set -e
mount --bind /run %[1]s/hostrun
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/kvmnet
mount --bind %[1]s/hostrun/kvmnet /run/kvmnet
dbus-daemon --system --nofork --nopidfile >%[1]s/dbus.log 2>&1 &
while [ ! -S /run/dbus/system_bus_socket ]; do sleep 0.05; done
firewalld --nofork --nopid --system-config %[1]s/etc --default-config %[1]s/usr --log-target file --log-file %[1]s/firewalld.log >%[1]s/firewalld.out 2>&1 &
exec sleep infinity`, dir)
	c := h.Cmd("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	if err := c.Start(); err != nil {
		h.T.Fatal(err)
	}
	go func() { _ = c.Wait() }()
	f := &Firewalld{h: h, holder: c.Process.Pid, Dir: dir}
	// Before the TempDir's removal (cleanups run last first): end the bus,
	// firewalld and whatever D-Bus started (polkitd), which write there.
	h.T.Cleanup(f.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _, err := f.Run("firewall-cmd", "--state")
		if err == nil && strings.TrimSpace(out) == "running" {
			return f
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "firewalld.log"))
			h.T.Fatalf("firewalld did not start: %s %v\n%s", out, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Run runs argv in firewalld's mount namespace and the host's network namespace.
func (f *Firewalld) Run(argv ...string) (stdout, stderr string, err error) {
	var o, e Buffer
	c := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(f.holder), "-m", "-n", "--"}, argv...)...)
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	return o.String(), e.String(), err
}

// MustRun is Run, failing the test when argv fails.
func (f *Firewalld) MustRun(argv ...string) string {
	f.h.T.Helper()
	o, e, err := f.Run(argv...)
	if err != nil {
		f.h.T.Fatalf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(argv, " "), err, o, e)
	}
	return o
}

// Log is firewalld's log.
func (f *Firewalld) Log() string {
	b, _ := os.ReadFile(filepath.Join(f.Dir, "firewalld.log"))
	return string(b)
}

// stop kills every process of the mount namespace.
func (f *Firewalld) stop() {
	self, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", f.holder))
	if err != nil {
		return
	}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	var mine []int
	for _, p := range pids {
		if ns, err := os.Readlink(p + "/ns/mnt"); err == nil && ns == self {
			if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
				mine = append(mine, pid)
			}
		}
	}
	for _, pid := range mine {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		alive := 0
		for _, pid := range mine {
			if s, ok := ProcState(strconv.Itoa(pid)); ok && s != 'Z' {
				alive++
			}
		}
		if alive == 0 {
			return
		}
	}
}
