package netsvc

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// The memory comparison: kvmnet's daemon and dnsmasq started with libvirt's
// flags (and, given $KVMNET_BENCH_BEFORE, another build's kvmnet-netsvc),
// each serving a network of its own, read from /proc/PID/smaps_rollup at
// rest, once 1000 clients hold a lease of each, and as more networks come
// up (one daemon per network for all, as libvirt runs one dnsmasq per
// network).

// smaps is a process's memory from /proc/PID/smaps_rollup, in kB.
type smaps struct {
	rss, pss, anon float64
	threads        int
}

// private is what the process alone holds and the kernel cannot drop
// without swap: its anonymous pages (heap, stacks, and its own copies of
// the file pages it wrote, .data). Not Private_Dirty, which also counts a
// file's pages still dirty in the page cache: a binary just built by make.
func (m smaps) private() float64 { return m.anon }

func readSmaps(b *testing.B, pid int) smaps {
	b.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var m smaps
	fields := map[string]*float64{"Rss:": &m.rss, "Pss:": &m.pss, "Anonymous:": &m.anon}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) >= 2 && fields[fs[0]] != nil {
			*fields[fs[0]], _ = strconv.ParseFloat(fs[1], 64)
		}
	}
	m.threads = int(statusKB(b, pid, "Threads"))
	return m
}

// readings is how many times a reading is taken, a second apart, for the
// median of each figure: a Go daemon's heap grows between collections, so
// one reading depends on when it falls.
const readings = 5

// readSides reads every side's first daemon readings times, interleaved.
func readSides(b *testing.B, sides []*memSide) []smaps {
	all := make([][]smaps, len(sides))
	for r := range readings {
		if r > 0 {
			time.Sleep(time.Second)
		}
		for i, s := range sides {
			all[i] = append(all[i], readSmaps(b, s.pids[0]))
		}
	}
	out := make([]smaps, len(sides))
	for i, ms := range all {
		pick := func(f func(smaps) float64) float64 {
			xs := make([]float64, len(ms))
			for j, m := range ms {
				xs[j] = f(m)
			}
			return median(xs)
		}
		out[i] = smaps{
			rss:     pick(func(m smaps) float64 { return m.rss }),
			pss:     pick(func(m smaps) float64 { return m.pss }),
			anon:    pick(func(m smaps) float64 { return m.anon }),
			threads: int(pick(func(m smaps) float64 { return float64(m.threads) })),
		}
	}
	return out
}

// memNetworks is how many networks the growth is measured over:
// KVMNET_BENCH_NETWORKS, else 8.
func memNetworks() int {
	if n, err := strconv.Atoi(os.Getenv("KVMNET_BENCH_NETWORKS")); err == nil && n > 1 {
		return n
	}
	return 8
}

// rest is how long the daemons are left before a reading: dnsmasq's
// bind-dynamic binds once it sees br0's address, and kvmnet's daemon gives
// back a burst's heap within two restChecks of its end.
const rest = 2*restCheck + time.Second

// memSide is one daemon under comparison: how to start one on a network,
// the pids of those started, and its first network's DHCP client.
type memSide struct {
	name   string
	start  func(n *testNet) int
	pids   []int
	client *rawClient
	first  *testNet
}

// sumPSS is the PSS of the side's daemons together, in kB: each shared
// page divided among the processes mapping it.
func (s *memSide) sumPSS(b *testing.B) float64 {
	var t float64
	for _, p := range s.pids {
		t += readSmaps(b, p).pss
	}
	return t
}

// memSides are kvmnet's daemon (bin/, as make bench builds it), dnsmasq
// with libvirt's flags, and the before build when there is one.
func memSides(b *testing.B, cfg Config) []*memSide {
	var asked atomic.Int64
	kvmnet := func(exe string) func(n *testNet) int {
		return func(n *testNet) int {
			n.cfg.Upstreams = []string{benchUpstream(b, n.host, &asked)}
			n.exe = exe
			n.start()
			return n.pid
		}
	}
	sides := []*memSide{
		{name: "kvmnet", start: kvmnet(daemonBinary(b))},
		// --no-ping: dnsmasq pings each address before its first offer and
		// answers a DISCOVER only after 3 s without a reply, which would
		// make 1000 leases take an hour; the ping keeps no state per lease.
		{name: "dnsmasq", start: func(n *testNet) int {
			return startDnsmasq(b, n, benchUpstream(b, n.host, &asked), "--no-ping")
		}},
	}
	if dir := os.Getenv("KVMNET_BENCH_BEFORE"); dir != "" {
		sides = append(sides, &memSide{name: "before", start: kvmnet(filepath.Join(dir, "kvmnet-netsvc"))})
	}
	for _, s := range sides {
		s.first = newTestNet(b, cfg)
		s.pids = append(s.pids, s.start(s.first))
		s.client = newRawClient(b, s.first.guest, "eth0")
	}
	return sides
}

// BenchmarkDaemonMemory: kvmnet-netsvc's memory over dnsmasq's (libvirt's
// flags), as ratios kvmnet/dnsmasq: RSS, PSS and private memory at rest; the
// same with 1000 leases; and the PSS each extra network adds, N daemons of
// each (their binaries' pages shared between instances). Run it with
// -benchtime 1x: every figure is read after the daemons rest, the median
// of readings.
func BenchmarkDaemonMemory(b *testing.B) {
	cfg := Config{
		Network: "bench", Bridge: "br0", Gateway: netip.MustParsePrefix("10.77.0.1/21"), DHCP: true, DNS: true,
		Hosts: []Host{{MAC: testStatic.MAC, IP: netip.MustParseAddr("10.77.0.99"), Name: "fixed"}},
	}
	cfg.Defaults()
	sides := memSides(b, cfg)
	for b.Loop() {
		time.Sleep(rest)
		atRest := readSides(b, sides)
		for _, s := range sides {
			lease1000(b, s.client, 0)
		}
		time.Sleep(rest)
		for _, s := range sides {
			if s.name != "dnsmasq" {
				if ls, err := ctl.Leases(s.first.cfg.LeaseFile); err != nil || len(ls) != 1000 {
					b.Fatalf("%s: %d leases on disk: %v", s.name, len(ls), err)
				}
			}
		}
		leased := readSides(b, sides)
		var one, all, grow []float64
		for _, s := range sides {
			one = append(one, s.sumPSS(b))
		}
		n := memNetworks()
		for range n - 1 {
			for _, s := range sides {
				s.pids = append(s.pids, s.start(newTestNet(b, cfg)))
			}
		}
		time.Sleep(rest)
		for i, s := range sides {
			all = append(all, s.sumPSS(b))
			grow = append(grow, (all[i]-one[i])/float64(n-1))
			b.Logf("%s: at rest rss %.0f pss %.0f anon %.0f kB, %d threads; 1000 leases rss %.0f pss %.0f anon %.0f kB, %d threads; %d networks pss %.0f kB, %.0f kB per extra network",
				s.name, atRest[i].rss, atRest[i].pss, atRest[i].anon, atRest[i].threads,
				leased[i].rss, leased[i].pss, leased[i].anon, leased[i].threads, n, all[i], grow[i])
		}
		reportMemory(b, atRest, leased, grow)
	}
}

// reportMemory reports side 0 (kvmnet) over side 1 (dnsmasq), and side 2
// (before) over dnsmasq too when there is one.
func reportMemory(b *testing.B, atRest, leased []smaps, grow []float64) {
	mb := func(kb float64) float64 { return kb / 1024 }
	b.ReportMetric(mb(atRest[0].rss), "MB-rss-rest")
	b.ReportMetric(mb(atRest[0].private()), "MB-private-rest")
	b.ReportMetric(mb(leased[0].private()), "MB-private-1000leases")
	b.ReportMetric(mb(grow[0]), "MB-pss-per-network")
	for i, side := range []string{"", "-before"} {
		k := 2 * i
		if k >= len(atRest) {
			break
		}
		b.ReportMetric(atRest[k].rss/atRest[1].rss, "rss-rest-x-dnsmasq"+side)
		b.ReportMetric(atRest[k].pss/atRest[1].pss, "pss-rest-x-dnsmasq"+side)
		b.ReportMetric(atRest[k].private()/atRest[1].private(), "private-rest-x-dnsmasq"+side)
		b.ReportMetric(leased[k].rss/leased[1].rss, "rss-1000leases-x-dnsmasq"+side)
		b.ReportMetric(leased[k].private()/leased[1].private(), "private-1000leases-x-dnsmasq"+side)
		b.ReportMetric((leased[k].private()-atRest[k].private())/(leased[1].private()-atRest[1].private()), "private-growth-1000leases-x-dnsmasq"+side)
		b.ReportMetric(grow[k]/grow[1], "pss-per-network-x-dnsmasq"+side)
	}
}
