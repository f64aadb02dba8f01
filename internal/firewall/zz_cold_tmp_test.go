package firewall

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
	"golang.org/x/sys/unix"
)

func TestZZColdEnsureTiming(t *testing.T) {
	base := Network{Name: "default", Bridge: "br0", Mode: NAT, Gateway: netip.MustParsePrefix("192.168.100.1/24"), Services: true}
	guarded := base
	guarded.Guard = PortGuard{On: true}
	cases := []struct {
		name string
		n    Network
	}{{"nat+guard", guarded}}
	d := make([][]time.Duration, len(cases))
	w := make([][]time.Duration, len(cases))
	for i := 0; i < 60; i++ {
		for j, c := range cases {
			ns := testns.New(t)
			ns.MustRun("ip", "link", "add", "br0", "type", "bridge")
			var took, wall time.Duration
			run(t, ns, func(fw *nft) error {
				var a, b unix.Timespec
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &a)
				s := time.Now()
				_, err := fw.Ensure(c.n)
				wall = time.Since(s)
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &b)
				took = time.Duration(b.Nano() - a.Nano())
				return err
			})
			d[j] = append(d[j], took)
			w[j] = append(w[j], wall)
		}
	}
	for j, c := range cases {
		slices.Sort(d[j])
		slices.Sort(w[j])
		t.Logf("%-10s cpu median %v min %v; wall median %v min %v", c.name, d[j][len(d[j])/2], d[j][0], w[j][len(w[j])/2], w[j][0])
	}
}
