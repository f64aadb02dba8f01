// Package bench measures the helpers as QEMU runs them: whole processes,
// exec'd from a thread inside a fresh network namespace (so `ip netns exec`
// is not counted). Each benchmark reports the median wall time of one helper
// run as median-ms; `make bench` prints them side by side.
package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

var bin string

func TestMain(m *testing.M) { testhost.Main(m, &bin) }

// world is a namespace with a config whose leases live in a temp dir.
type world struct {
	ns     *testns.NS
	b      *testing.B
	config string
}

func newWorld(b *testing.B) *world {
	ns := testns.New(b)
	dir := b.TempDir()
	cfg := filepath.Join(dir, "kvmnet.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("lease_dir = %q\n", dir)), 0o644); err != nil {
		b.Fatal(err)
	}
	return &world{ns: ns, b: b, config: cfg}
}

// run execs a helper inside the namespace and returns how long it took.
func (w *world) run(prog, tap string) time.Duration {
	var took time.Duration
	err := w.ns.Do(func() error {
		cmd := exec.Command(prog, tap)
		cmd.Env = []string{"KVMNET_CONFIG=" + w.config, "PATH=" + os.Getenv("PATH")}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took = time.Since(start)
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", prog, tap, err, out)
		}
		return nil
	})
	if err != nil {
		w.b.Fatal(err)
	}
	return took
}

func (w *world) tap(name string) string {
	w.ns.MustRun("ip", "tuntap", "add", name, "mode", "tap")
	return name
}

// taps makes n taps in one `ip -batch` call.
func (w *world) taps(prefix string, n int) []string {
	f, err := os.CreateTemp(w.b.TempDir(), "batch")
	if err != nil {
		w.b.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", prefix, i)
		fmt.Fprintf(f, "tuntap add %s mode tap\n", names[i])
	}
	f.Close()
	w.ns.MustRun("ip", "-batch", f.Name())
	return names
}

// report sets median-ms, the figure the README quotes.
func report(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(0, "ns/op")
}

// impl is a pair of up and down scripts: kvmnet's, or the seed's shell.
type impl struct{ name, up, down string }

func impls() []impl {
	seed, _ := filepath.Abs("testdata")
	return []impl{
		{"kvmnet", filepath.Join(bin, "kvmnet-natup"), filepath.Join(bin, "kvmnet-natdown")},
		{"seed", filepath.Join(seed, "seed-natup.sh"), filepath.Join(seed, "seed-natdown.sh")},
	}
}

// each runs f for kvmnet and for the seed scripts, side by side in one run.
func each(b *testing.B, f func(b *testing.B, w *world, im impl)) {
	for _, im := range impls() {
		b.Run(im.name, func(b *testing.B) {
			if im.name == "seed" {
				if _, err := exec.LookPath("brctl"); err != nil {
					b.Skip("the seed scripts need brctl (bridge-utils)")
				}
			}
			f(b, newWorld(b), im)
		})
	}
}

func BenchmarkNatupCold(b *testing.B) {
	each(b, func(b *testing.B, w *world, im impl) {
		tap := w.tap("vnet0")
		var d []time.Duration
		for b.Loop() {
			d = append(d, w.run(im.up, tap))
			w.run(im.down, tap)
		}
		report(b, d)
	})
}

func BenchmarkNatupWarm(b *testing.B) {
	each(b, func(b *testing.B, w *world, im impl) {
		w.run(im.up, w.tap("vnet0"))
		tap := w.tap("vnet1")
		var d []time.Duration
		for b.Loop() {
			d = append(d, w.run(im.up, tap))
			w.run(im.down, tap)
		}
		report(b, d)
	})
}

func BenchmarkNatdown(b *testing.B) {
	each(b, func(b *testing.B, w *world, im impl) {
		w.run(im.up, w.tap("vnet0"))
		tap := w.tap("vnet1")
		var d []time.Duration
		for b.Loop() {
			w.run(im.up, tap)
			d = append(d, w.run(im.down, tap))
		}
		report(b, d)
	})
}

func BenchmarkNatdownLast(b *testing.B) {
	each(b, func(b *testing.B, w *world, im impl) {
		tap := w.tap("vnet0")
		var d []time.Duration
		for b.Loop() {
			w.run(im.up, tap)
			d = append(d, w.run(im.down, tap))
		}
		report(b, d)
	})
}

// BenchmarkIfup attaches one more tap to a live isolated network.
func BenchmarkIfup(b *testing.B) {
	w := newWorld(b)
	up, down := filepath.Join(bin, "kvmnet-ifup"), filepath.Join(bin, "kvmnet-ifdown")
	w.run(up, w.tap("vnet0"))
	tap := w.tap("vnet1")
	var d []time.Duration
	for b.Loop() {
		d = append(d, w.run(up, tap))
		w.run(down, tap)
	}
	report(b, d)
}

// BenchmarkNatupColdNoServices is a cold NAT up without the DHCP/DNS daemon,
// to show what the daemon's start costs.
func BenchmarkNatupColdNoServices(b *testing.B) {
	w := newWorld(b)
	if err := os.WriteFile(w.config, []byte("[network.default]\ndhcp = false\ndns = false\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	up, down := filepath.Join(bin, "kvmnet-natup"), filepath.Join(bin, "kvmnet-natdown")
	tap := w.tap("vnet0")
	var d []time.Duration
	for b.Loop() {
		d = append(d, w.run(up, tap))
		w.run(down, tap)
	}
	report(b, d)
}

// BenchmarkPorts measures the up and down of one more tap on a NAT bridge
// that already has ports-1 of them: the cost must not grow with the count.
func BenchmarkPorts(b *testing.B) {
	natup, natdown := filepath.Join(bin, "kvmnet-natup"), filepath.Join(bin, "kvmnet-natdown")
	for _, ports := range []int{10, 1000} {
		b.Run(fmt.Sprintf("ports=%d", ports), func(b *testing.B) {
			w := newWorld(b)
			for _, tap := range w.taps("t", ports-1) {
				w.run(natup, tap)
			}
			tap := w.tap("vnetx")
			var up, down []time.Duration
			for b.Loop() {
				up = append(up, w.run(natup, tap))
				down = append(down, w.run(natdown, tap))
			}
			slices.Sort(up)
			slices.Sort(down)
			b.ReportMetric(float64(up[len(up)/2].Microseconds())/1000, "up-median-ms")
			b.ReportMetric(float64(down[len(down)/2].Microseconds())/1000, "down-median-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkFloor measures what any helper pays before doing anything, from
// the same harness: starting /bin/true, and starting kvmnet-natup --version
// (the Go runtime and kvmnet's package inits). The helpers' figures above are
// best read against these.
func BenchmarkFloor(b *testing.B) {
	for _, c := range []struct{ name, prog, arg string }{
		{"true", "/bin/true", ""},
		{"natup-version", filepath.Join(bin, "kvmnet-natup"), "--version"},
	} {
		b.Run(c.name, func(b *testing.B) {
			w := newWorld(b)
			var d []time.Duration
			for b.Loop() {
				d = append(d, w.run(c.prog, c.arg))
			}
			report(b, d)
		})
	}
}
