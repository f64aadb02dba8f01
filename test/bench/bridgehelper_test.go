package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// qemuBridgeHelper is QEMU's own helper, as Debian installs it.
const qemuBridgeHelper = "/usr/lib/qemu/qemu-bridge-helper"

// driverEnv makes TestBridgeHelperDriver run: the benchmark starts this test
// binary again inside the namespace, in a mount namespace of its own.
const driverEnv = "KVMNET_BENCH_BRIDGE_DRIVER"

// beforeNSEnv names the namespace of the before side's network.
const beforeNSEnv = "KVMNET_BENCH_BEFORE_NS"

// durationsMark starts the driver's line of results.
const durationsMark = "DURATIONS "

// BenchmarkBridgeHelper: a VM's tap made, attached to a network that is up
// and passed to QEMU, by kvmnet-bridge-helper and by QEMU's own
// qemu-bridge-helper, as QEMU runs them (a socket pair, --use-vnet --fd=N
// --br=br0, the fd received), interleaved; and, given $KVMNET_BENCH_BEFORE,
// by that build's kvmnet-bridge-helper, on a network of its own (br1) in a
// namespace of its own, so that neither build's runs change the state the
// other's find (each version rewrites the namespace's ACL cache under its
// own key). QEMU's helper reads its ACL from /etc/qemu/bridge.conf, which the
// machine need not have: both run from a driver in a mount namespace whose
// /etc is an overlay with that file.
func BenchmarkBridgeHelper(b *testing.B) {
	if _, err := os.Stat(qemuBridgeHelper); err != nil {
		b.Skipf("no %s (qemu-system-common)", qemuBridgeHelper)
	}
	w := newWorld(b)
	w.writeConfig(fmt.Sprintf("lease_dir = %q\n%s", filepath.Dir(w.config), beforeNetwork))
	w.run(filepath.Join(bin, "kvmnet-natup"), w.tap("vnet0")) // the network is up, held by vnet0
	// The before side's network, held by vnet1, in its own namespace.
	var beforeNS string
	if dir, ok := before(); ok {
		link := filepath.Join(b.TempDir(), "kvmnet-natup@before")
		if err := os.Symlink(filepath.Join(dir, "kvmnet-natup"), link); err != nil {
			b.Fatal(err)
		}
		wb := newWorld(b)
		wb.writeConfig(fmt.Sprintf("lease_dir = %q\n%s", filepath.Dir(wb.config), beforeNetwork))
		wb.run(link, wb.tap("vnet1"))
		beforeNS = wb.ns.Name
	}
	ovl := b.TempDir()
	for _, f := range []struct{ path, body string }{
		{"up/qemu/bridge.conf", "allow br0\n"},
		{"up/kvmnet/kvmnet.toml", fmt.Sprintf("lease_dir = %q\n%s", filepath.Dir(w.config), beforeNetwork)},
		{"work/.keep", ""},
	} {
		p := filepath.Join(ovl, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	os.Remove(filepath.Join(ovl, "work/.keep"))
	n := 0
	for b.Loop() {
		n++
	}
	mount := fmt.Sprintf("mount --make-rprivate / && mount -t overlay kvmnet-bench -o lowerdir=/etc,upperdir=%[1]s/up,workdir=%[1]s/work /etc && exec \"$@\"", ovl)
	cmd := w.ns.Cmd("unshare", "-m", "sh", "-c", mount, "sh", os.Args[0], "-test.run=^TestBridgeHelperDriver$")
	cmd.Env = []string{driverEnv + "=" + strconv.Itoa(n), "KVMNET_BENCH_BIN=" + bin, emptyEnv + "=" + emptyGo(b), "PATH=" + os.Getenv("PATH")}
	sides := []string{"kvmnet", "qemu", "emptygo"}
	if dir, ok := before(); ok {
		cmd.Env = append(cmd.Env, "KVMNET_BENCH_BEFORE="+dir, beforeNSEnv+"="+beforeNS)
		sides = append(sides, "before")
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("driver: %v\n%s%s", err, out, stderr.String())
	}
	var d map[string][]time.Duration
	_, js, _ := strings.Cut(string(out), durationsMark)
	js, _, _ = strings.Cut(js, "\n")
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		b.Fatalf("driver said %q: %v", out, err)
	}
	medians := map[string]float64{}
	for _, side := range sides {
		slices.Sort(d[side])
		medians[side] = float64(d[side][len(d[side])/2].Microseconds()) / 1000
		b.ReportMetric(medians[side], side+"-ms")
	}
	b.ReportMetric(0, "ns/op")
	ratio(b, medians, "kvmnet", "qemu")
	ratio(b, medians, "kvmnet", "emptygo")
	ratio(b, medians, "kvmnet", "before")
}

// emptyEnv names the empty Go main (emptyGo) the driver runs beside the
// helpers as the floor: started and waited for, as they are.
const emptyEnv = "KVMNET_BENCH_EMPTY"

// beforeNetwork is the network the "before" side's helper uses.
const beforeNetwork = "[network.before]\nbridge = \"br1\"\naddress = \"192.168.101.1/24\"\nallow = [\"@kvm\"]\n"

// TestBridgeHelperDriver is BenchmarkBridgeHelper's inside: run only by it.
// It times each helper from its start until QEMU's side holds the tap's fd
// and the helper has exited, and prints the times as JSON.
func TestBridgeHelperDriver(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(driverEnv))
	if err != nil {
		t.Skip("run by BenchmarkBridgeHelper only")
	}
	helpers := map[string][]string{
		"kvmnet": {filepath.Join(os.Getenv("KVMNET_BENCH_BIN"), "kvmnet-bridge-helper"), "--br=br0"},
		"qemu":   {qemuBridgeHelper, "--br=br0"},
	}
	sides := []string{"kvmnet", "qemu", "emptygo"}
	if dir, ok := before(); ok {
		helpers["before"] = []string{filepath.Join(dir, "kvmnet-bridge-helper"), "--br=br1"}
		sides = append(sides, "before")
	}
	d := map[string][]time.Duration{}
	for range n {
		for _, i := range rand.Perm(len(sides)) { // a new order each round, as sideBySide's
			side := sides[i]
			var took time.Duration
			run := func() (err error) {
				took, err = runBridgeHelper(helpers[side][0], helpers[side][1])
				return err
			}
			var err error
			switch side {
			case "emptygo":
				err = runEmpty(&took)
			case "before":
				err = (&testns.NS{Name: os.Getenv(beforeNSEnv)}).Do(run)
			default:
				err = run()
			}
			if err != nil {
				t.Fatalf("%s: %v", side, err)
			}
			d[side] = append(d[side], took)
		}
	}
	out, _ := json.Marshal(d)
	fmt.Printf("\n%s%s\n", durationsMark, out)
}

// runEmpty runs the empty Go main from the driver, as it runs a helper.
func runEmpty(took *time.Duration) error {
	cmd := exec.Command(os.Getenv(emptyEnv))
	start := time.Now()
	err := cmd.Run()
	*took = time.Since(start)
	return err
}

// runBridgeHelper runs helper for bridge br (--br=NAME) as net_bridge_run_helper (QEMU's net/tap.c)
// does, receives the tap and closes it, which deletes it.
func runBridgeHelper(helper, br string) (time.Duration, error) {
	sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(sv[0])
	theirs := os.NewFile(uintptr(sv[1]), "helper socket")
	cmd := exec.Command(helper, "--use-vnet", "--fd=3", br)
	cmd.ExtraFiles = []*os.File{theirs}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return 0, err
	}
	theirs.Close()
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, rerr := unix.Recvmsg(sv[0], buf, oob, 0)
	werr := cmd.Wait()
	took := time.Since(start)
	if rerr != nil || werr != nil {
		return 0, fmt.Errorf("recvmsg: %v, exit: %v", rerr, werr)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return 0, fmt.Errorf("no fd received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return 0, fmt.Errorf("no fd received: %v", err)
	}
	unix.Close(fds[0])
	return took, nil
}
