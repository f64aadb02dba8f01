// Package bench measures the helpers as QEMU runs them: whole processes,
// exec'd from a thread inside a fresh network namespace (so `ip netns exec`
// is not counted). What a benchmark compares (kvmnet and the seed scripts it
// replaces, the 10th and the 1000th port, ...) runs interleaved in one loop,
// each side in a namespace of its own, so that every side sees the same load
// of a shared, noisy machine; each side's median wall time is reported as
// SIDE-ms, and the ratio of the two that matter as A/B.
package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

var bin string

func TestMain(m *testing.M) {
	if os.Getenv(driverEnv) != "" { // BenchmarkBridgeHelper's driver: the binaries are built
		os.Exit(m.Run())
	}
	testhost.Main(m, &bin)
}

// world is a namespace with a config whose leases live in a temp dir.
type world struct {
	ns     *testns.NS
	b      *testing.B
	config string
	side   string // the side of a versusSeed benchmark it is
}

// settle waits, outside the measured time, for what a last down left running
// after it returned: kvmnet's deletes the bridge in the background, holding
// the network's lock, which the next up would wait for (testhost.Settle).
func (w *world) settle() { testhost.Settle(w.b, w.ns) }

func newWorld(b *testing.B) *world {
	dir := b.TempDir() // first: removed after the namespace's cleanup has killed its daemon
	ns := testns.New(b)
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

// writeConfig replaces the world's configuration file (its lease_dir goes).
func (w *world) writeConfig(config string) {
	if err := os.WriteFile(w.config, []byte(config), 0o644); err != nil {
		w.b.Fatal(err)
	}
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

// side is one of the things a benchmark compares: measure does one
// iteration in the side's own namespace and returns the time that counts.
type side struct {
	name    string
	measure func() time.Duration
}

// sideBySide runs one iteration of every side, b.N times, and reports each
// side's median as SIDE-ms. The sides take turns in a new random order each
// round: in a fixed one, a side always ran right after the same other side
// and met what that one's runs left the kernel to finish (a deleted tap's
// grace period, say).
func sideBySide(b *testing.B, sides ...side) map[string]float64 {
	d := make([][]time.Duration, len(sides))
	for b.Loop() {
		for _, i := range rand.Perm(len(sides)) {
			d[i] = append(d[i], sides[i].measure())
		}
	}
	medians := make(map[string]float64)
	for i, s := range sides {
		slices.Sort(d[i])
		medians[s.name] = float64(d[i][len(d[i])/2].Microseconds()) / 1000
		b.ReportMetric(medians[s.name], s.name+"-ms")
	}
	b.ReportMetric(0, "ns/op")
	return medians
}

// ratio reports medians[a]/medians[b] as "a/b", if both sides ran.
func ratio(b *testing.B, medians map[string]float64, a, c string) {
	if medians[a] > 0 && medians[c] > 0 {
		b.ReportMetric(medians[a]/medians[c], a+"/"+c)
	}
}

// scripts is a pair of up and down scripts.
type scripts struct{ up, down string }

func kvmnetNAT() scripts { return natIn(bin) }

func natIn(dir string) scripts {
	return scripts{filepath.Join(dir, "kvmnet-natup"), filepath.Join(dir, "kvmnet-natdown")}
}

// before is $KVMNET_BENCH_BEFORE: a directory holding another build of the
// helpers and kvmnet (e.g. `make build` of an older commit), measured as the
// side "before" in the same loop, so that a change is judged under one load.
func before() (string, bool) {
	dir := os.Getenv("KVMNET_BENCH_BEFORE")
	return dir, dir != ""
}

// seed returns the seed's shell scripts, or false when they cannot run here.
func seed(b *testing.B) (scripts, bool) {
	if _, err := exec.LookPath("brctl"); err != nil {
		b.Log("seed scripts left out: they need brctl (bridge-utils)")
		return scripts{}, false
	}
	dir, _ := filepath.Abs("testdata")
	return scripts{filepath.Join(dir, "seed-natup.sh"), filepath.Join(dir, "seed-natdown.sh")}, true
}

// versusSeed runs f's side for kvmnet and, where it can run, for the seed
// scripts, interleaved, and reports kvmnet/seed.
func versusSeed(b *testing.B, f func(w *world, s scripts) func() time.Duration, extra ...side) map[string]float64 {
	named := func(name string) *world {
		w := newWorld(b)
		w.side = name
		return w
	}
	sides := []side{{"kvmnet", f(named("kvmnet"), kvmnetNAT())}}
	if sd, ok := seed(b); ok {
		sides = append(sides, side{"seed", f(named("seed"), sd)})
	}
	if dir, ok := before(); ok {
		sides = append(sides, side{"before", f(named("before"), natIn(dir))})
	}
	m := sideBySide(b, append(sides, extra...)...)
	ratio(b, m, "kvmnet", "seed")
	ratio(b, m, "kvmnet", "before")
	return m
}

// BenchmarkNatupCold: the first VM's up, which makes the network; and, to
// show what the DHCP/DNS daemon adds, the same without it (kvmnet-nodhcp).
func BenchmarkNatupCold(b *testing.B) {
	cold := func(w *world, s scripts) func() time.Duration {
		tap := w.tap("vnet0")
		return func() time.Duration {
			d := w.run(s.up, tap)
			w.run(s.down, tap)
			w.settle()
			return d
		}
	}
	nodhcp := newWorld(b)
	nodhcp.writeConfig("[network.default]\ndhcp = false\ndns = false\n")
	versusSeed(b, cold, side{"kvmnet-nodhcp", cold(nodhcp, kvmnetNAT())})
}

// BenchmarkNatupWarm: a VM's up on a network another VM holds up; and, as
// the floor it stands on, an empty static Go main started the same way.
func BenchmarkNatupWarm(b *testing.B) {
	empty, w := emptyGo(b), newWorld(b)
	floor := side{"emptygo", func() time.Duration { return w.run(empty, "") }}
	m := versusSeed(b, func(w *world, s scripts) func() time.Duration {
		w.run(s.up, w.tap("vnet0"))
		tap := w.tap("vnet1")
		return func() time.Duration {
			d := w.run(s.up, tap)
			w.run(s.down, tap)
			// A tap comes from QEMU down, with the kernel's random MAC,
			// which the up replaces with its port MAC (fe:…): so again.
			w.ns.MustRun("ip", "link", "set", tap, "down", "address", "02:00:00:00:00:01")
			return d
		}
	}, floor)
	ratio(b, m, "kvmnet", "emptygo")
}

// BenchmarkNatdown: a VM's down that leaves the network to another VM; and
// the empty Go main beside it, the floor of its target (issue 25).
func BenchmarkNatdown(b *testing.B) {
	empty, w := emptyGo(b), newWorld(b)
	floor := side{"emptygo", func() time.Duration { return w.run(empty, "") }}
	m := versusSeed(b, func(w *world, s scripts) func() time.Duration {
		w.run(s.up, w.tap("vnet0"))
		tap := w.tap("vnet1")
		return func() time.Duration {
			w.run(s.up, tap)
			return w.run(s.down, tap)
		}
	}, floor)
	ratio(b, m, "kvmnet", "emptygo")
}

// BenchmarkNatdownLast: the last VM's down, which tears the network down:
// SIDE-ms until it returns (what QEMU waits for), and SIDE-gone-ms until the
// network is gone, bridge and all, and its lock free. kvmnet's down returns
// before its bridge is deleted (that waits 25-70 ms on the kernel); the
// seed's is gone when it returns.
func BenchmarkNatdownLast(b *testing.B) {
	gone := map[string][]time.Duration{}
	versusSeed(b, func(w *world, s scripts) func() time.Duration {
		tap := w.tap("vnet0")
		return func() time.Duration {
			w.run(s.up, tap)
			start := time.Now()
			d := w.run(s.down, tap)
			w.settle()
			gone[w.side] = append(gone[w.side], time.Since(start))
			return d
		}
	})
	for name, d := range gone {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-gone-ms")
	}
}

// BenchmarkIfup attaches one more tap to a live isolated network; beside it
// QEMU's qemu-bridge-helper attaches one to an existing bridge (it makes the
// tap too, which kvmnet-ifup is handed by QEMU), and the empty Go main, the
// floor. kvmnet-adminbr is kvmnet-ifup on an isolated network whose bridge
// an admin made, empty, and quieted (arp_ignore=8, disable_ipv6=1) before
// kvmnet first used it: the case whose every up was the engine's until its
// hot file listed those two settings.
func BenchmarkIfup(b *testing.B) {
	ifup := func(dir string, admin bool) func() time.Duration {
		w := newWorld(b)
		if admin {
			w.ns.MustRun("ip", "link", "add", "br0", "type", "bridge")
			w.ns.MustRun("sysctl", "-qw", "net.ipv4.conf.br0.arp_ignore=8", "net.ipv6.conf.br0.disable_ipv6=1")
		}
		up, down := filepath.Join(dir, "kvmnet-ifup"), filepath.Join(dir, "kvmnet-ifdown")
		w.run(up, w.tap("vnet0"))
		tap := w.tap("vnet1")
		return func() time.Duration {
			d := w.run(up, tap)
			w.run(down, tap)
			w.ns.MustRun("ip", "link", "set", tap, "down") // as QEMU hands it over
			return d
		}
	}
	empty, w := emptyGo(b), newWorld(b)
	sides := []side{{"kvmnet", ifup(bin, false)}, {"kvmnet-adminbr", ifup(bin, true)},
		{"emptygo", func() time.Duration { return w.run(empty, "") }}}
	if q, ok := newQEMUWorld(b); ok {
		sides = append(sides, side{"qemu-bridge-helper", q.attach})
	}
	if dir, ok := before(); ok {
		sides = append(sides, side{"before", ifup(dir, false)}, side{"before-adminbr", ifup(dir, true)})
	}
	m := sideBySide(b, sides...)
	for _, s := range []string{"kvmnet", "kvmnet-adminbr"} {
		ratio(b, m, s, "qemu-bridge-helper")
		ratio(b, m, s, "emptygo")
	}
	ratio(b, m, "kvmnet", "before")
	ratio(b, m, "kvmnet-adminbr", "before-adminbr")
}

// BenchmarkPorts: the up and the down of one more tap on a NAT bridge that
// has 9 ports already, and on one that has 999: the cost must not grow with
// the count.
func BenchmarkPorts(b *testing.B) {
	s := kvmnetNAT()
	var sides []side
	for _, ports := range []int{10, 1000} {
		w := newWorld(b)
		for _, tap := range w.taps("t", ports-1) {
			w.run(s.up, tap)
		}
		tap := w.tap("vnetx")
		sides = append(sides,
			side{fmt.Sprintf("up%d", ports), func() time.Duration { return w.run(s.up, tap) }},
			side{fmt.Sprintf("down%d", ports), func() time.Duration { return w.run(s.down, tap) }},
		)
	}
	m := sideBySide(b, sides...)
	ratio(b, m, "up1000", "up10")
	ratio(b, m, "down1000", "down10")
}

// BenchmarkFloor is what any helper pays before doing anything, from the same
// harness: starting /bin/true, an empty static Go main (the Go runtime, and
// about what a tap script's front costs before its checks), and kvmnet
// --version (the engine: the binary a front execs for a cold up or a last
// down, and the DHCP/DNS daemon). The figures above are best read against
// these. (kvmnet-natup --version is a front's start plus the engine's: the
// front hands every option to the engine.)
func BenchmarkFloor(b *testing.B) {
	w := newWorld(b)
	kvmnet, empty := filepath.Join(bin, "kvmnet"), emptyGo(b)
	sideBySide(b,
		side{"true", func() time.Duration { return w.run("/bin/true", "") }},
		side{"emptygo", func() time.Duration { return w.run(empty, "") }},
		side{"kvmnet-version", func() time.Duration { return w.run(kvmnet, "--version") }},
	)
}

// BenchmarkNatupWarmForwards: a warm up on a network with 100 port forwards
// costs what it costs with none (issue 12): the forwards are in the record
// with a hash of the configuration, so a warm up compares a hash and looks
// at no rule. Reported as forwards100/none.
func BenchmarkNatupWarmForwards(b *testing.B) {
	s := kvmnetNAT()
	warm := func(config string) func() time.Duration {
		w := newWorld(b)
		if config != "" {
			w.writeConfig(config)
		}
		w.run(s.up, w.tap("vnet0"))
		tap := w.tap("vnet1")
		return func() time.Duration {
			d := w.run(s.up, tap)
			w.run(s.down, tap)
			return d
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "lease_dir = %q\n[network.default]\n", b.TempDir())
	for i := range 100 {
		fmt.Fprintf(&conf, "[[network.default.forward]]\nproto = \"tcp\"\nport = %d\nto = \"192.168.100.%d:80\"\n", 10000+i, 2+i)
	}
	m := sideBySide(b, side{"none", warm("")}, side{"forwards100", warm(conf.String())})
	ratio(b, m, "forwards100", "none")
}
