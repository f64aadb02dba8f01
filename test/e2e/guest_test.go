package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// guest is one boot of the test guest (see scripts/guest/init for the parameters).
type guest struct {
	Name     string
	MAC      string   // default: a new one (newMAC)
	Net      string   // kvmnet.net: "dhcp" or "A.B.C.D/N,GW"
	Serve    []int    // kvmnet.serve: ports answered with "kvmnet-guest NAME"
	UDP      string   // kvmnet.udp: "dhcp" answers DHCP on udp 67 (see dhcpRoundTrip)
	Check    []string // kvmnet.check: retried until they pass, e.g. "tcp:203.0.113.1:80"
	Try      []string // kvmnet.try: tried once each, after the checks
	Wait     int      // kvmnet.wait: seconds for the checks (default 40)
	Hold     int      // kvmnet.hold: seconds to stay up (serving) after the checks
	Up, Down string   // QEMU's script= and downscript=
	Tap      string   // ifname=; default "kvtap-NAME"
	Netdev   string   // the -netdev value, instead of a tap with Up and Down (e.g. bridge,...,helper=)
	Prefix   []string // run before QEMU in the host namespace, e.g. setpriv to run it as a user
	Env      []string // QEMU's environment, instead of the world's
	// OnLine, when set, sees every KVMNET line (without the prefix) as it arrives.
	OnLine func(line string, qemu *os.Process)
}

// boot is what came of a guest's run.
type boot struct {
	g      guest
	mac    string
	serial string   // everything QEMU printed
	lines  []string // the KVMNET lines, without "KVMNET "
	err    error    // QEMU's exit
	took   time.Duration
}

var macSeq atomic.Uint32

// newMAC gives every guest of the run its own locally administered QEMU-style address.
func newMAC() string {
	n := macSeq.Add(1)
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", os.Getpid()&0xff, (n>>8)&0xff, n&0xff)
}

// boot starts the guests at the same moment in the host namespace and waits
// until all have powered off (or were killed).
func (w *world) boot(gs ...guest) []*boot {
	w.t.Helper()
	release := acquire(len(gs))
	defer release()
	return w.bootIn(gs...)
}

// bootIn is boot for a caller that already holds the guests' slots
// (acquire): a test that keeps one guest up while it boots another takes
// both slots first. Were the second boot to wait for a slot of its own, two
// such tests at once would each hold one of two slots with their first
// guest, whose hold ends only after the second boot: both second guests
// would wait out the holds, and boot on networks that had gone meanwhile.
func (w *world) bootIn(gs ...guest) []*boot {
	w.t.Helper()
	res := make([]*boot, len(gs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, g := range gs {
		res[i] = &boot{g: g, mac: g.MAC}
		if g.MAC == "" {
			res[i].mac = newMAC()
		}
		wg.Add(1)
		go func(b *boot) {
			defer wg.Done()
			<-start
			w.run1(b)
		}(res[i])
	}
	close(start)
	wg.Wait()
	noLease := false
	for _, b := range res {
		w.t.Logf("guest %s (%s) ran %.1fs: %v\n    %s", b.g.Name, b.mac, b.took.Seconds(), b.err,
			strings.Join(b.lines, "\n    "))
		_, failed := b.find("fail dhcp")
		noLease = noLease || failed
	}
	if noLease {
		w.t.Logf("a guest got no lease; the DHCP/DNS daemons' logs:\n%s", w.host.DaemonLogs())
	}
	return res
}

func (w *world) run1(b *boot) {
	g := b.g
	if g.Tap == "" {
		g.Tap = "kvtap-" + g.Name
	}
	if g.Wait == 0 {
		g.Wait = 40
	}
	params := []string{
		"console=ttyS0", "quiet", "panic=-1",
		"kvmnet.name=" + g.Name,
		"kvmnet.net=" + g.Net,
		"kvmnet.wait=" + strconv.Itoa(g.Wait),
		"kvmnet.hold=" + strconv.Itoa(g.Hold),
		"kvmnet.timeout=" + strconv.Itoa(g.Wait+g.Hold+60),
	}
	if len(g.Serve) > 0 {
		var ps []string
		for _, p := range g.Serve {
			ps = append(ps, strconv.Itoa(p))
		}
		params = append(params, "kvmnet.serve="+strings.Join(ps, ","))
	}
	if g.UDP != "" {
		params = append(params, "kvmnet.udp="+g.UDP)
	}
	if len(g.Check) > 0 {
		params = append(params, "kvmnet.check="+strings.Join(g.Check, ","))
	}
	if len(g.Try) > 0 {
		params = append(params, "kvmnet.try="+strings.Join(g.Try, ","))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(g.Wait+g.Hold+120)*time.Second)
	defer cancel()
	// By its path (setup found it): the helpers' PATH, w.env's, may hold no
	// programs at all.
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		qemu = "qemu-system-x86_64"
	}
	argv := []string{"ip", "netns", "exec", w.host.Name,
		qemu, "-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none",
		"-no-reboot", "-serial", "stdio",
		"-kernel", filepath.Join(guestDir, "vmlinuz"), "-initrd", filepath.Join(guestDir, "initrd.img"),
		"-append", strings.Join(params, " "),
		"-netdev", fmt.Sprintf("tap,id=n0,ifname=%s,script=%s,downscript=%s", g.Tap, qemuEscape(g.Up), qemuEscape(g.Down)),
		"-device", "virtio-net-pci,netdev=n0,mac=" + b.mac,
	}

	argv = g.customize(argv)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = w.env
	if g.Env != nil {
		c.Env = g.Env
	}
	var serial bytes.Buffer
	pr, pw := io.Pipe()
	c.Stdout = pw
	c.Stderr = &lockedWriter{w: &serial, mu: &sync.Mutex{}}
	stdout := &lockedWriter{w: &serial, mu: c.Stderr.(*lockedWriter).mu}
	t0 := time.Now()
	if err := c.Start(); err != nil {
		b.err = err
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := sc.Text()
			_, _ = stdout.Write([]byte(l + "\n"))
			i := strings.Index(l, "KVMNET ")
			if i < 0 {
				continue
			}
			k := strings.TrimSpace(l[i+len("KVMNET "):])
			b.lines = append(b.lines, k)
			if g.OnLine != nil {
				g.OnLine(k, c.Process)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	b.err = c.Wait()
	pw.Close()
	<-done
	b.took = time.Since(t0)
	b.serial = serial.String()
}

// customize applies the guest's Netdev and Prefix to argv, `ip netns exec NS
// QEMU ...`.
func (g guest) customize(argv []string) []string {
	if g.Netdev != "" {
		if i := slices.Index(argv, "-netdev"); i >= 0 {
			argv[i+1] = g.Netdev
		}
	}
	return slices.Insert(argv, 4, g.Prefix...)
}

// qemuEscape doubles commas, as QEMU's option syntax wants inside a value.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// find returns the first KVMNET line that starts with prefix, without the prefix.
func (b *boot) find(prefix string) (string, bool) {
	for _, l := range b.lines {
		if l == prefix {
			return "", true
		}
		if strings.HasPrefix(l, prefix+" ") {
			return strings.TrimPrefix(l, prefix+" "), true
		}
	}
	return "", false
}

func (b *boot) dump(t *testing.T) {
	t.Helper()
	t.Logf("guest %s: QEMU %v after %.1fs; its console:\n%s", b.g.Name, b.err, b.took.Seconds(), b.serial)
}

// ran fails t unless the guest booted, ran its checks and powered off cleanly.
func (b *boot) ran(t *testing.T) {
	t.Helper()
	if _, ok := b.find("done"); !ok || b.err != nil {
		b.dump(t)
		t.Fatalf("guest %s did not run to the end (QEMU: %v)", b.g.Name, b.err)
	}
}

// reached asserts the check passed and returns what the guest got back.
func (b *boot) reached(t *testing.T, check string) string {
	t.Helper()
	what := strings.Replace(check, ":", " ", 1)
	reply, ok := b.find("ok " + what)
	if !ok {
		b.dump(t)
		t.Errorf("guest %s: want %q to pass", b.g.Name, check)
	}
	return reply
}

// blocked asserts the check failed.
func (b *boot) blocked(t *testing.T, check string) {
	t.Helper()
	what := strings.Replace(check, ":", " ", 1)
	if reply, ok := b.find("ok " + what); ok {
		b.dump(t)
		t.Errorf("guest %s: want %q to fail, it got %q", b.g.Name, check, reply)
	}
	if _, ok := b.find("fail " + what); !ok {
		b.dump(t)
		t.Errorf("guest %s: no result for %q", b.g.Name, check)
	}
}
