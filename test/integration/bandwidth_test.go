package integration

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestBandwidth: a network's bandwidth limits each guest's port both ways,
// as iperf3 measures it between a guest and the host (within 20%); a static
// host's own out overrides the network's for that guest only (matched by its
// MAC), its in left to the network's; a network without bandwidth gets no
// qdisc; the downs leave no qdisc and no ifb.
func TestBandwidth(t *testing.T) {
	const conf = `[network.bw]
bridge = "kvbw0"
mode = "hostonly"
address = "10.66.0.1/24"
dhcp = false
dns = false
ports = "any"
bandwidth = { in = "20mbit", out = "10mbit" }
[[network.bw.host]]
mac = "52:54:00:00:66:21"
ip = "10.66.0.21"
name = "web1"
bandwidth = { out = "5mbit" }
[network.free]
bridge = "kvfree0"
mode = "hostonly"
address = "10.67.0.1/24"
dhcp = false
dns = false
ports = "any"
`
	testhost.LoadIfb(t)
	h := newHost(t, "nftables", conf)
	h.SetLinks(h.Links())
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	plain := h.guest("vbw1", "10.66.0.10/24", "10.66.0.1")
	web1 := h.guest("vbw2", "", "")
	web1.MustRun("ip", "link", "set", "eth0", "address", "52:54:00:00:66:21")
	web1.MustRun("ip", "addr", "add", "10.66.0.21/24", "dev", "eth0")
	h.guest("vfree", "10.67.0.10/24", "10.67.0.1")
	h.mustHelper("kvmnet-natup@bw", "vbw1")
	h.mustHelper("kvmnet-natup@bw", "vbw2")
	h.mustHelper("kvmnet-natup@free", "vfree")

	for i, tc := range []struct {
		name    string
		g       *testns.NS
		reverse bool // the host sends: "in", to the guest
		mbit    float64
	}{
		{"plain guest out", plain, false, 10},
		{"plain guest in", plain, true, 20},
		{"web1 out (its own)", web1, false, 5},
		{"web1 in (the network's)", web1, true, 20},
	} {
		got := iperf(t, h, tc.g, "10.66.0.1", 5201+2*i, tc.reverse)
		if math.Abs(got-tc.mbit) > 0.2*tc.mbit {
			// Once more: iperf3 3.12 now and then reports 0 for a
			// reverse run that moved data, and the machine is shared.
			got = iperf(t, h, tc.g, "10.66.0.1", 5202+2*i, tc.reverse)
		}
		if math.Abs(got-tc.mbit) > 0.2*tc.mbit {
			t.Errorf("%s: %.1f Mbit/s, want %.0f ±20%%\n%s", tc.name, got, tc.mbit, h.MustRun("tc", "-s", "class", "show", "dev", "vbw1"))
		}
	}
	if q := h.MustRun("tc", "qdisc", "show", "dev", "vfree"); strings.Contains(q, "htb") || strings.Contains(q, "ingress") {
		t.Errorf("a port of a network without bandwidth has qdiscs:\n%s", q)
	}
	h.mustHelper("kvmnet-natdown@bw", "vbw1")
	h.mustHelper("kvmnet-natdown@bw", "vbw2")
	h.mustHelper("kvmnet-natdown@free", "vfree")
	for _, port := range []string{"vbw1", "vbw2"} {
		if q := h.MustRun("tc", "qdisc", "show", "dev", port); strings.Contains(q, "htb") || strings.Contains(q, "ingress") {
			t.Errorf("%s keeps qdiscs after its down:\n%s", port, q)
		}
	}
	if l := h.MustRun("ip", "-br", "link", "show", "type", "ifb"); l != "" {
		t.Errorf("ifbs left after the downs:\n%s", l)
	}
	for _, port := range []string{"vbw1", "vbw2", "vfree"} {
		h.MustRun("ip", "link", "del", port)
	}
	h.assertClean(rules, fwd)
}

// iperf runs iperf3 for 3 s (the first left out: TCP's slow start) from
// guest g to a server on the host at addr, reverse: the host sending, and
// returns what the receiver got, in Mbit/s.
func iperf(t *testing.T, h *host, g *testns.NS, addr string, port int, reverse bool) float64 {
	t.Helper()
	p := strconv.Itoa(port) // a port of its own: a server of an earlier run may still be closing
	srv := h.Cmd("iperf3", "-s", "-1", "-B", addr, "-p", p)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }() // a -1 server may linger after a reverse test
	argv := []string{"timeout", "20", "iperf3", "-c", addr, "-p", p, "-t", "3", "-O", "1", "-J", "--connect-timeout", "3000"}
	if reverse {
		argv = append(argv, "-R")
	}
	var out string
	var err error
	for range 20 { // the server needs a moment to listen
		if out, _, err = g.Run(argv...); err == nil {
			break
		}
		g.MustRun("sleep", "0.1")
	}
	if err != nil {
		t.Fatalf("iperf3 %s: %v\n%s", strings.Join(argv[1:], " "), err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("iperf3's JSON: %v\n%s", err, out)
	}
	mbit := r.End.SumReceived.BitsPerSecond / 1e6
	t.Logf("iperf3 %s: %.2f Mbit/s", strings.Join(argv[2:], " "), mbit)
	return mbit
}
