package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// bridgeHelper is QEMU's own /usr/lib/qemu/qemu-bridge-helper, the C helper
// that makes a tap, attaches it to a bridge and passes its fd to QEMU.
const bridgeHelper = "/usr/lib/qemu/qemu-bridge-helper"

// emptyGo builds an empty static Go main into a temp dir, as `make build`
// builds the helpers: the floor any Go helper stands on.
func emptyGo(b *testing.B) string {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module empty\n\ngo 1.26\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "empty", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build an empty Go main: %v: %s", err, out)
	}
	return filepath.Join(dir, "empty")
}

// qemuWorld is a namespace with a bridge br0, and a thread that has entered
// it inside a private mount namespace where /etc/qemu/bridge.conf allows br0:
// the ACL qemu-bridge-helper insists on, without writing the machine's /etc
// (an overlay over /etc that only this thread's children see).
type qemuWorld struct {
	w    *world
	jobs chan func()
}

func newQEMUWorld(b *testing.B) (*qemuWorld, bool) {
	if _, err := os.Stat(bridgeHelper); err != nil {
		b.Logf("qemu-bridge-helper left out: %s is missing (qemu-system-common)", bridgeHelper)
		return nil, false
	}
	w := newWorld(b)
	w.ns.MustRun("ip", "link", "add", "br0", "type", "bridge")
	w.ns.MustRun("ip", "link", "set", "br0", "up")
	dir := b.TempDir()
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{filepath.Join(upper, "qemu"), work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(upper, "qemu", "bridge.conf"), []byte("allow br0\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	q := &qemuWorld{w: w, jobs: make(chan func())}
	ready, done := make(chan error), make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		leave, err := q.enter(upper, work)
		ready <- err
		if err != nil {
			leave()
			return
		}
		for job := range q.jobs {
			job()
		}
		leave()
	}()
	if err := <-ready; err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { close(q.jobs); <-done })
	return q, true
}

// enter moves the calling thread into a private mount namespace with the
// overlay on /etc (`unshare -m; mount -t overlay ... /etc`), then into the
// world's network namespace. The thread stays locked, so it dies with its
// goroutine, except for the process's main thread, which Go never ends: a
// process whose main thread stays in the namespace is one `ip netns pids`
// lists and the namespace's cleanup kills. leave takes that one back.
func (q *qemuWorld) enter(upper, work string) (leave func(), err error) {
	leave = func() {}
	if unix.Gettid() == unix.Getpid() {
		mnt, err := os.Open("/proc/thread-self/ns/mnt")
		if err != nil {
			return leave, err
		}
		origin, err := netns.Get()
		if err != nil {
			mnt.Close()
			return leave, err
		}
		leave = func() {
			if netns.Set(origin) == nil && unix.Setns(int(mnt.Fd()), unix.CLONE_NEWNS) == nil {
				runtime.UnlockOSThread()
			}
			origin.Close()
			mnt.Close()
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return leave, fmt.Errorf("unshare the mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return leave, fmt.Errorf("make / private: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=/etc,upperdir=%s,workdir=%s", upper, work)
	if err := unix.Mount("overlay", "/etc", "overlay", 0, opts); err != nil {
		return leave, fmt.Errorf("overlay /etc: %w", err)
	}
	h, err := netns.GetFromName(q.w.ns.Name)
	if err != nil {
		return leave, fmt.Errorf("open netns %s: %w", q.w.ns.Name, err)
	}
	defer h.Close()
	return leave, netns.Set(h)
}

// attach runs qemu-bridge-helper as QEMU does (`--use-vnet --fd=N --br=br0`,
// N one end of a unix socket pair), takes the tap's fd it sends and closes
// it, which deletes the tap. It returns the helper's wall time.
func (q *qemuWorld) attach() time.Duration {
	var took time.Duration
	var err error
	done := make(chan struct{})
	q.jobs <- func() { took, err = runBridgeHelper(bridgeHelper, "--br=br0"); close(done) }
	<-done
	if err != nil {
		q.w.b.Fatal(err)
	}
	return took
}
