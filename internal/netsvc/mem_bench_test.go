package netsvc

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// The memory comparison: kvmnet's daemon and dnsmasq started with libvirt's
// flags, each serving a network of its own, read from
// /proc/PID/smaps_rollup at rest, once 1000 clients hold a lease of each,
// and as more networks come up (one daemon per network for both, as libvirt
// runs one dnsmasq per network).

// smaps is a process's memory from /proc/PID/smaps_rollup, in kB.
type smaps struct {
	rss, pss, anon, privDirty float64
	threads                   int
}

// private is what the process alone holds and the kernel cannot drop:
// its anonymous pages and its dirtied copies of file pages (.data), that is
// Private_Dirty (Anonymous is part of it, once written).
func (m smaps) private() float64 { return m.privDirty }

func readSmaps(b *testing.B, pid int) smaps {
	b.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var m smaps
	fields := map[string]*float64{"Rss:": &m.rss, "Pss:": &m.pss, "Anonymous:": &m.anon, "Private_Dirty:": &m.privDirty}
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

// sumPSS is the PSS of pids together, in kB: each shared page counted once
// across them (and the processes outside them that map it).
func sumPSS(b *testing.B, pids []int) float64 {
	var t float64
	for _, p := range pids {
		t += readSmaps(b, p).pss
	}
	return t
}

// memNetworks is how many networks the growth is measured over:
// KVMNET_BENCH_NETWORKS, else 8.
func memNetworks() int {
	if n, err := strconv.Atoi(os.Getenv("KVMNET_BENCH_NETWORKS")); err == nil && n > 1 {
		return n
	}
	return 8
}

// settle lets both daemons reach rest: dnsmasq's bind-dynamic binds once it
// sees br0's address, and kvmnet's daemon gives back its start-up heap.
func settle() { time.Sleep(time.Second) }

// BenchmarkDaemonMemory: kvmnet-netsvc's memory over dnsmasq's (libvirt's
// flags), as ratios kvmnet/dnsmasq: RSS, PSS and private memory at rest; the
// same with 1000 leases; and the PSS each extra network adds, N daemons of
// each (their binaries' pages shared between instances). Run it with
// -benchtime 1x: every figure is read once, after the daemons settle.
func BenchmarkDaemonMemory(b *testing.B) {
	ours, oc := benchNet(b)
	theirs := newTestNet(b, ours.cfg)
	var asked [2]atomic.Int64
	ours.stop()
	ours.cfg.Upstreams = []string{benchUpstream(b, ours.host, &asked[0])}
	ours.start()
	// --no-ping: dnsmasq pings each address before its first offer and
	// answers a DISCOVER only after 3 s without a reply, which would make
	// 1000 leases take an hour; the ping keeps no state per lease.
	dm := startDnsmasq(b, theirs, benchUpstream(b, theirs.host, &asked[1]), "--no-ping")
	tc := newRawClient(b, theirs.guest, "eth0")
	settle()
	for b.Loop() {
		rest := [2]smaps{readSmaps(b, ours.pid), readSmaps(b, dm)}
		lease1000(b, oc, 0)
		lease1000(b, tc, 0)
		time.Sleep(2 * flushDelay)
		settle()
		if ls, err := ctl.Leases(ours.cfg.LeaseFile); err != nil || len(ls) != 1000 {
			b.Fatalf("%d leases on disk: %v", len(ls), err)
		}
		leased := [2]smaps{readSmaps(b, ours.pid), readSmaps(b, dm)}
		pids := [2][]int{{ours.pid}, {dm}}
		one := [2]float64{sumPSS(b, pids[0]), sumPSS(b, pids[1])}
		n := memNetworks()
		for range n - 1 {
			o := newTestNet(b, ours.cfg)
			o.cfg.Upstreams = ours.cfg.Upstreams
			o.exe = ours.exe
			o.start()
			t := newTestNet(b, ours.cfg)
			pids[0] = append(pids[0], o.pid)
			pids[1] = append(pids[1], startDnsmasq(b, t, ours.cfg.Upstreams[0]))
		}
		settle()
		all := [2]float64{sumPSS(b, pids[0]), sumPSS(b, pids[1])}
		grow := [2]float64{(all[0] - one[0]) / float64(n-1), (all[1] - one[1]) / float64(n-1)}
		for i, side := range []string{"kvmnet", "dnsmasq"} {
			b.Logf("%s: rest rss %.0f pss %.0f private %.0f anon %.0f kB, %d threads; 1000 leases rss %.0f pss %.0f private %.0f anon %.0f kB; %d networks pss %.0f kB, %.0f kB per extra network",
				side, rest[i].rss, rest[i].pss, rest[i].private(), rest[i].anon, rest[i].threads,
				leased[i].rss, leased[i].pss, leased[i].private(), leased[i].anon, n, all[i], grow[i])
		}
		mb := func(kb float64) float64 { return kb / 1024 }
		b.ReportMetric(mb(rest[0].rss), "MB-rss-rest")
		b.ReportMetric(mb(rest[0].pss), "MB-pss-rest")
		b.ReportMetric(mb(rest[0].private()), "MB-private-rest")
		b.ReportMetric(rest[0].rss/rest[1].rss, "rss-rest-x-dnsmasq")
		b.ReportMetric(rest[0].pss/rest[1].pss, "pss-rest-x-dnsmasq")
		b.ReportMetric(rest[0].private()/rest[1].private(), "private-rest-x-dnsmasq")
		b.ReportMetric(leased[0].rss/leased[1].rss, "rss-1000leases-x-dnsmasq")
		b.ReportMetric(leased[0].pss/leased[1].pss, "pss-1000leases-x-dnsmasq")
		b.ReportMetric(leased[0].private()/leased[1].private(), "private-1000leases-x-dnsmasq")
		b.ReportMetric((leased[0].private()-rest[0].private())/(leased[1].private()-rest[1].private()), "private-growth-1000leases-x-dnsmasq")
		b.ReportMetric(mb(grow[0]), "MB-pss-per-network")
		b.ReportMetric(grow[0]/grow[1], "pss-per-network-x-dnsmasq")
	}
}
