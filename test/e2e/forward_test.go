package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// forwardConf forwards the hypervisor's tcp 8080 to the static host web
// (192.168.100.21) port 8080, and its udp 6767 to web's udp 67, where the
// guest's udhcpd answers.
const forwardConf = `
[network.default]

[[network.default.host]]
mac = "%s"
ip = "192.168.100.21"
name = "web"

[[network.default.forward]]
proto = "tcp"
port = 8080
to = "web:8080"

[[network.default.forward]]
proto = "udp"
port = 6767
to = "192.168.100.21:67"
`

// TestForwards boots a guest serving tcp 8080 and DHCP on the default NAT
// network with two forwards, and a second guest beside it. The tcp forward
// answers from the outside host, from the hypervisor's uplink address and
// 127.0.0.1, and, through the hypervisor's address, from the second guest
// (hairpin); the udp forward carries a datagram in and its answer back out.
// After `kvmnet reload` with the tcp forward moved to 9090, 9090 answers and
// 8080 does not. After the guests are gone, nothing of kvmnet remains.
func TestForwards(t *testing.T) {
	t.Parallel()
	for _, fw := range []string{"nftables", "iptables"} {
		t.Run(fw, func(t *testing.T) { testForwards(t, fw) })
	}
}

func testForwards(t *testing.T, fw string) {
	mac := newMAC()
	w := newWorld(t, fmt.Sprintf("firewall = %q\n", fw)+fmt.Sprintf(forwardConf, mac))
	up, down := w.helper("natup", ""), w.helper("natdown", "")
	uplink := func(port int) string { return fmt.Sprintf("%s:%d", uplinkIP, port) }

	var mu sync.Mutex
	var problems []string
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, a...))
	}
	var once, twice sync.Once
	g2done := make(chan struct{})
	probe := func(qemu *os.Process) {
		defer func() { _ = qemu.Signal(syscall.SIGTERM) }() // QEMU runs the downscript on SIGTERM
		for _, p := range []struct {
			what string
			ns   *testns.NS
			addr string
		}{
			{"outside host -> uplink:8080", w.out, uplink(8080)},
			{"hypervisor -> its uplink:8080", w.host, uplink(8080)},
			{"hypervisor -> 127.0.0.1:8080", w.host, "127.0.0.1:8080"},
		} {
			if got, err := ask(p.ns, p.addr); err != nil || got != "kvmnet-guest g1" {
				fail("%s: got %q, %v; want kvmnet-guest g1", p.what, got, err)
			}
		}
		if from, err := dhcpRoundTrip(w.out, outsideIP, uplink(6767)); err != nil || from != uplink(6767) {
			fail("outside host -> uplink udp 6767 -> guest udp 67: answer from %q, %v; want one from %s", from, err, uplink(6767))
		}

		// The second guest's hairpin check must see 8080 before the move.
		select {
		case <-g2done:
		case <-time.After(90 * time.Second):
			fail("the second guest did not finish its checks")
		}
		conf, err := os.ReadFile(w.conf)
		if err == nil {
			err = os.WriteFile(w.conf, []byte(strings.Replace(string(conf), "port = 8080", "port = 9090", 1)), 0o644)
		}
		if err != nil {
			fail("edit the config: %v", err)
			return
		}
		if out, err := w.run(filepath.Join(binDir, "kvmnet"), "reload"); err != nil {
			fail("kvmnet reload: %v: %s", err, out)
			return
		}
		if got, err := ask(w.out, uplink(9090)); err != nil || got != "kvmnet-guest g1" {
			fail("after reload, outside host -> uplink:9090: got %q, %v; want kvmnet-guest g1", got, err)
		}
		if got, err := ask(w.out, uplink(8080)); err == nil {
			fail("after reload, outside host -> uplink:8080 still answers: %q", got)
		}
		if from, err := dhcpRoundTrip(w.out, outsideIP, uplink(6767)); err != nil || from != uplink(6767) {
			fail("after reload, the udp forward: answer from %q, %v", from, err)
		}
		status, err := w.run(filepath.Join(binDir, "kvmnet"), "status", "default")
		if err != nil || !regexp.MustCompile(`(?m)^tcp +9090 +default +192\.168\.100\.21:8080 `).MatchString(status) ||
			regexp.MustCompile(`(?m)^tcp +8080 `).MatchString(status) {
			fail("kvmnet status after reload (%v) does not list the moved forward:\n%s", err, status)
		}
		rules := w.host.IptablesSave() + w.host.MustRun("nft", "-s", "list", "ruleset")
		if strings.Contains(rules, "dport 8080") || !strings.Contains(rules, "dport 9090") {
			fail("after reload the rules do not hold exactly the moved forward:\n%s", rules)
		}
	}
	bs := w.boot(
		guest{Name: "g1", MAC: mac, Net: "192.168.100.21" + natNet, Serve: []int{8080}, UDP: "dhcp",
			Check: []string{"ping:" + natGW}, Hold: 120, Up: up, Down: down,
			OnLine: func(line string, qemu *os.Process) {
				if strings.HasPrefix(line, "done") {
					once.Do(func() { go probe(qemu) })
				}
			}},
		guest{Name: "g2", Net: "192.168.100.22" + natNet, Check: []string{"tcp:" + uplink(8080)}, Wait: 60, Up: up, Down: down,
			OnLine: func(line string, _ *os.Process) {
				if strings.HasPrefix(line, "done") {
					twice.Do(func() { close(g2done) })
				}
			}},
	)
	bs[1].ran(t)
	if got := bs[1].reached(t, "tcp:"+uplink(8080)); got != "kvmnet-guest g1" {
		t.Errorf("second guest -> uplink:8080 (hairpin): got %q, want kvmnet-guest g1", got)
	}
	if _, ok := bs[0].find("done"); !ok {
		bs[0].dump(t)
		t.Fatal("the serving guest did not finish its checks")
	}
	for _, p := range problems {
		t.Error(p)
	}
	w.checkRestored()
}

// ask connects to addr from ns, sends a line, and returns the first line of the answer.
func ask(ns *testns.NS, addr string) (string, error) {
	var reply string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintln(c, "hello"); err != nil {
			return err
		}
		reply, err = bufio.NewReader(c).ReadString('\n')
		reply = strings.TrimSpace(reply)
		return err
	})
	return reply, err
}

// dhcpRoundTrip sends, from port 67 of local in ns, a DHCPDISCOVER to addr
// as a relay would (giaddr = local), and returns where the OFFER came from.
// udhcpd sends it to giaddr:67 from its port 67: exactly the reverse of the
// datagram it got, so conntrack takes it back through the forward.
func dhcpRoundTrip(ns *testns.NS, local, addr string) (string, error) {
	var from string
	err := ns.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(local), Port: 67})
		if err != nil {
			return err
		}
		defer c.Close()
		to, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		pkt := make([]byte, 240, 244)
		pkt[0], pkt[1], pkt[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, 6-byte MAC
		binary.BigEndian.PutUint32(pkt[4:], 0x6b766d6e)
		copy(pkt[24:28], net.ParseIP(local).To4()) // giaddr
		copy(pkt[28:34], []byte{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc})
		copy(pkt[236:240], []byte{99, 130, 83, 99})
		pkt = append(pkt, 53, 1, 1, 255) // DHCPDISCOVER
		for try := 0; try < 3; try++ {
			if _, err := c.WriteToUDP(pkt, to); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1500)
			n, src, err := c.ReadFromUDP(buf)
			if err != nil {
				continue
			}
			if n < 240 || buf[0] != 2 || binary.BigEndian.Uint32(buf[4:]) != 0x6b766d6e {
				return fmt.Errorf("not an answer to the DISCOVER: %d bytes", n)
			}
			from = src.String()
			return nil
		}
		return fmt.Errorf("no answer to 3 DISCOVERs")
	})
	return from, err
}
