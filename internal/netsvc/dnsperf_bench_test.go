package netsvc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// The dnsperf comparison: kvmnet's forwarder and dnsmasq started with
// libvirt's flags, each on a bridge of its own with the same upstream, asked
// the same names by dnsperf from a guest namespace, one after the other.

// dnsperfRounds is how many times each server is asked each kind of name,
// in turn: the machine's load changes from one second to the next, so each
// round's ratio compares two runs next to each other, and the median of the
// rounds is reported.
const dnsperfRounds = 3

// median of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// dnsperfSeconds is how long dnsperf asks each server each kind of name:
// KVMNET_BENCH_DNS_SECONDS, else 2.
func dnsperfSeconds() int {
	if n, err := strconv.Atoi(os.Getenv("KVMNET_BENCH_DNS_SECONDS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// benchUpstream answers every name with an A record: names under
// zero.example with TTL 0 (nothing to cache: every query is forwarded),
// others with TTL 3600.
func benchUpstream(b *testing.B, ns *testns.NS, asked *atomic.Int64) string {
	b.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); return err }); err != nil {
		b.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		ttl := uint32(3600)
		if strings.HasSuffix(r.Question[0].Name, ".zero.example.") {
			ttl = 0
		}
		if r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IPv4(203, 0, 113, 7)})
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// benchGuest gives n's guest an address to ask from.
func benchGuest(n *testNet) {
	n.guest.MustRun("ip", "addr", "add", "10.77.1.50/21", "dev", "eth0")
}

// startDnsmasq runs dnsmasq on n's bridge as libvirt starts it for a NAT
// network (its generated conf-file, --leasefile-ro; the lease helper
// script left out) forwarding to upstream, with extra flags, and returns its
// pid.
func startDnsmasq(b *testing.B, n *testNet, upstream string, extra ...string) int {
	b.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		b.Skip("no dnsmasq (apt install dnsmasq-base)")
	}
	host, port, _ := net.SplitHostPort(upstream)
	hosts := filepath.Join(n.dir, "dnsmasq.addnhosts")
	conf := filepath.Join(n.dir, "dnsmasq.conf")
	must(b, os.WriteFile(hosts, []byte("10.77.0.99 fixed.kvm fixed\n"), 0o644))
	must(b, os.WriteFile(conf, []byte(strings.Join([]string{
		"strict-order", "pid-file=" + filepath.Join(n.dir, "dnsmasq.pid"),
		"except-interface=lo", "bind-dynamic", "interface=br0",
		"domain=kvm", "local=/kvm/", "expand-hosts",
		"no-resolv", "server=" + host + "#" + port,
		"dhcp-range=10.77.0.2,10.77.7.254,255.255.248.0", "dhcp-no-override", "dhcp-authoritative",
		"dhcp-lease-max=2045", "addn-hosts=" + hosts,
		"log-facility=" + filepath.Join(n.dir, "dnsmasq.log"), "user=root", "",
	}, "\n")), 0o644))
	cmd := n.host.Cmd(append([]string{"dnsmasq", "--conf-file=" + conf, "--leasefile-ro", "--keep-in-foreground"}, extra...)...)
	must(b, cmd.Start())
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// dnsperfResult is what one dnsperf run measured.
type dnsperfResult struct {
	qps, latencyMS float64
	lost           int
	completed      float64
}

var (
	qpsRe  = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	latRe  = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+)`)
	lostRe = regexp.MustCompile(`Queries lost:\s+([0-9]+)`)
	doneRe = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)
)

// dnsperf asks server the names of file from n's guest for seconds.
func dnsperf(b *testing.B, n *testNet, file string, seconds int) dnsperfResult {
	b.Helper()
	out, stderr, err := n.guest.Run("dnsperf", "-s", "10.77.0.1", "-d", file, "-l", strconv.Itoa(seconds), "-t", "2", "-q", "100")
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s%s", err, out, stderr)
	}
	num := func(re *regexp.Regexp) float64 {
		m := re.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("dnsperf output without %s:\n%s", re, out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	return dnsperfResult{qps: num(qpsRe), latencyMS: num(latRe) * 1000, lost: int(num(lostRe)), completed: num(doneRe)}
}

// cpuSeconds is the CPU time, user and system, that process pid has used
// (fields 14 and 15 of /proc/PID/stat, in clock ticks of 1/100 s). Per query,
// it depends much less on the machine's load than the rates do.
func cpuSeconds(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // f[0] is field 3
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// nameFile writes a dnsperf data file of count names made by format.
func nameFile(b *testing.B, dir, base, format string, count int) string {
	var s strings.Builder
	for i := range count {
		if strings.Contains(format, "%") {
			fmt.Fprintf(&s, format+" A\n", i)
		} else {
			s.WriteString(format + " A\n")
		}
	}
	p := filepath.Join(dir, base)
	must(b, os.WriteFile(p, []byte(s.String()), 0o644))
	return p
}

// BenchmarkDNSVersusDnsmasq: queries per second and average latency of
// kvmnet's forwarder over dnsmasq's, for local names, cacheable forwarded
// names (fewer than dnsmasq's default 150 cache entries, so that both answer
// from their cache) and TTL-0 forwarded names (every query goes upstream);
// with each daemon's CPU time per query answered (which the machine's load
// moves much less than the rates); then each daemon's memory. Given
// $KVMNET_BENCH_BEFORE (a directory holding another build's
// kvmnet-netsvc), that daemon is a third side, asked in the same rounds.
// Run it alone (-benchtime 1x): it takes the CPU.
func BenchmarkDNSVersusDnsmasq(b *testing.B) {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		b.Skip("no dnsperf (apt install dnsperf)")
	}
	ours, _ := benchNet(b)
	theirs := newTestNet(b, ours.cfg)
	ours.stop()
	asked := make([]atomic.Int64, 3)
	ours.cfg.Upstreams = []string{benchUpstream(b, ours.host, &asked[0])}
	ours.start()
	dm := startDnsmasq(b, theirs, benchUpstream(b, theirs.host, &asked[1]))
	sides := []*testNet{ours, theirs}
	pids := []int{ours.pid, dm}
	names := []string{"kvmnet", "dnsmasq"}
	if dir := os.Getenv("KVMNET_BENCH_BEFORE"); dir != "" {
		before := newTestNet(b, ours.cfg)
		before.exe = filepath.Join(dir, "kvmnet-netsvc")
		before.cfg.Upstreams = []string{benchUpstream(b, before.host, &asked[2])}
		before.start()
		sides, pids, names = append(sides, before), append(pids, before.pid), append(names, "before")
	}
	for _, n := range sides {
		benchGuest(n)
	}
	time.Sleep(time.Second) // dnsmasq's bind-dynamic binds once br0's address is seen
	rest := memOf(b, pids)
	kinds := []struct{ name, file string }{
		{"local", nameFile(b, ours.dir, "local", "fixed.kvm", 1)},
		{"cached", nameFile(b, ours.dir, "cached", "c%d.cache.example", 100)},
		{"ttl0", nameFile(b, ours.dir, "ttl0", "t%d.zero.example", 1000)},
	}
	for b.Loop() {
		for _, k := range kinds {
			if only := os.Getenv("KVMNET_BENCH_DNS_KINDS"); only != "" && !strings.Contains(only, k.name) {
				continue
			}
			if k.name == "cached" {
				for _, n := range sides {
					dnsperf(b, n, k.file, 1) // fill the cache
				}
			}
			ratio := make([][]float64, len(sides)) // qps over dnsmasq's
			lat := make([][]float64, len(sides))
			cpu := make([][]float64, len(sides))
			for range dnsperfRounds {
				res := make([]dnsperfResult, len(sides))
				parts := make([]string, len(sides))
				// In a new order each round: in a fixed one a side would always
				// run right after the same other, and meet what it left.
				for _, i := range rand.Perm(len(sides)) {
					before, cpu0 := asked[i].Load(), cpuSeconds(b, pids[i])
					res[i] = dnsperf(b, sides[i], k.file, dnsperfSeconds())
					up := asked[i].Load() - before
					used := (cpuSeconds(b, pids[i]) - cpu0) / max(res[i].completed, 1) * 1e6 // CPU µs per query answered
					parts[i] = fmt.Sprintf("%s %.0f qps %.2f ms %.1f µs CPU (%d lost, %d upstream)", names[i], res[i].qps, res[i].latencyMS, used, res[i].lost, up)
					lat[i], cpu[i] = append(lat[i], res[i].latencyMS), append(cpu[i], used)
				}
				b.Log(k.name + ": " + strings.Join(parts, " "))
				for i := range sides {
					ratio[i] = append(ratio[i], res[i].qps/res[1].qps)
				}
			}
			b.ReportMetric(median(ratio[0]), k.name+"-qps-x-dnsmasq")
			for i, suffix := range []string{"", "-dnsmasq", "-before"}[:len(sides)] {
				b.ReportMetric(median(lat[i]), k.name+"-ms-avg"+suffix)
				b.ReportMetric(median(cpu[i]), k.name+"-cpu-us/query"+suffix)
			}
			if len(sides) > 2 {
				b.ReportMetric(median(ratio[2]), k.name+"-qps-x-dnsmasq-before")
			}
		}
	}
	time.Sleep(time.Second)
	loaded := memOf(b, pids)
	for i, side := range []string{"", "-dnsmasq", "-before"}[:len(sides)] {
		b.ReportMetric(rest[i].rss, "MB-rss-rest"+side)
		b.ReportMetric(rest[i].anon, "MB-anon-rest"+side)
		b.ReportMetric(loaded[i].rss, "MB-rss-after"+side)
		b.ReportMetric(loaded[i].anon, "MB-anon-after"+side)
	}
	b.Logf("daemon binary: %s", ours.exe)
}

// mem is a process's resident memory in MB: all of it, and its anonymous
// part (heap, stacks): the rest is its binary's and libraries' pages, which
// every process running the same files shares.
type mem struct{ rss, anon float64 }

func memOf(b *testing.B, pids []int) []mem {
	out := make([]mem, len(pids))
	for i, pid := range pids {
		out[i] = mem{rss: statusKB(b, pid, "VmRSS") / 1024, anon: statusKB(b, pid, "RssAnon") / 1024}
	}
	return out
}

// daemonBinary is the kvmnet-netsvc that `make build` left in the
// repository's bin/ (as `make bench` builds it): what a host runs, static
// and stripped. Without it, the test binary, which is four times its size.
func daemonBinary(b *testing.B) string {
	p, err := filepath.Abs("../../bin/kvmnet-netsvc")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		b.Logf("no %s (make build): the test binary serves", p)
		return ""
	}
	return p
}
