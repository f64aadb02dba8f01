package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// asShared is as, but every QEMU it prefixes shares one mount namespace
// (one overlay /etc, held by a sleeping process), so that the configuration
// file keeps its identity from run to run, as on a real host, and the
// bridge helper's front can take a run on a network that is up.
func (uw *userWorld) asShared(holder *exec.Cmd, uid int, groups ...int) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(holder.Process.Pid), "-m", "--"}, setpriv(uid, groups...)...)
}

// sharedEtc starts the process whose mount namespace asShared enters.
func (uw *userWorld) sharedEtc() *exec.Cmd {
	uw.t.Helper()
	ovl := filepath.Join(uw.dir, "etc-shared")
	for _, d := range []string{"up/kvmnet", "work"} {
		must(uw.t, os.MkdirAll(filepath.Join(ovl, d), 0o755))
	}
	must(uw.t, os.WriteFile(filepath.Join(ovl, "up/kvmnet/kvmnet.toml"), []byte(uw.rootCfg), 0o644))
	mount := fmt.Sprintf("mount --make-rprivate / && mount -t overlay kvmnet-etc -o lowerdir=/etc,upperdir=%[1]s/up,workdir=%[1]s/work /etc && echo ready && exec sleep 3600", ovl)
	holder := exec.Command("ip", "netns", "exec", uw.host.Name, "unshare", "-m", "sh", "-c", mount)
	out, err := holder.StdoutPipe()
	must(uw.t, err)
	must(uw.t, holder.Start())
	uw.t.Cleanup(func() { holder.Process.Kill(); _ = holder.Wait() })
	buf := make([]byte, 6)
	if n, err := out.Read(buf); err != nil || string(buf[:n]) != "ready\n" {
		uw.t.Fatalf("shared /etc: %q, %v", buf[:n], err)
	}
	return holder
}

// TestUserVMWarm: a second user's VM on a network the first one's VM holds
// up gets its tap from the helper's front alone (the kvmnet binary beside
// the helper now fails), gets DHCP and reaches the outside; kvmnet status
// names its user; when both are gone, so is the network.
func TestUserVMWarm(t *testing.T) {
	t.Parallel()
	uw := newUserWorld(t, "")
	holder := uw.sharedEtc()
	defer acquire(2)() // the held guest and the one booted beside it (bootIn)
	up, wait := uw.held(t, guest{
		Name: "w1", Net: "dhcp", Hold: 150, Check: []string{toOutside},
		Netdev: uw.netdev("default"), Prefix: uw.asShared(holder, userA, uw.kvm),
	})
	q := up()
	// The engine replaced by one that fails: renamed over, so that the
	// running daemon keeps its own.
	engine := filepath.Join(filepath.Dir(uw.helper), "kvmnet")
	must(t, os.Rename(engine, engine+".real"))
	stub := filepath.Join(filepath.Dir(uw.helper), ".stub")
	must(t, os.WriteFile(stub, []byte("#!/bin/sh\necho engine ran >&2\nexit 3\n"), 0o755))
	must(t, os.Rename(stub, engine))
	var status string
	warm := uw.bootIn(guest{
		Name: "w2", Net: "dhcp", Check: []string{toOutside}, Hold: 3,
		Netdev: uw.netdev("br0"), Prefix: uw.asShared(holder, userB, uw.kvm),
		OnLine: func(l string, _ *os.Process) {
			if strings.HasPrefix(l, "done") {
				status, _ = uw.run(filepath.Join(binDir, "kvmnet"), "status", "--json")
			}
		},
	})[0]
	warm.ran(t)
	if !tapOf(t, status, userB) {
		t.Errorf("kvmnet status while w2 ran names no tap of uid %d:\n%s", userB, status)
	}
	// The engine back: the daemon runs `kvmnet gc` from its own path when
	// the last tap goes.
	must(t, os.Rename(engine+".real", engine))
	_ = q.Signal(syscall.SIGKILL)
	wait()
	holder.Process.Kill()
	_ = holder.Wait()
	uw.checkRestored()
}
