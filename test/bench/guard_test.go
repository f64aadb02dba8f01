package bench

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// BenchmarkGuard: what the guard (docs/guard.md) costs. Warm ups of a
// network with the guard on and off (on-ms, off-ms: the hot file is the
// same but for its group line, the attach one attribute longer), and the
// time 32 MiB of TCP take from one namespace guest to another through the
// bridge, where every frame of the sender's meets the guard's chains
// (on-xfer-ms, off-xfer-ms).
func BenchmarkGuard(b *testing.B) {
	s := kvmnetNAT()
	warm := func(guard string) func() time.Duration {
		w := newWorld(b)
		w.writeConfig(fmt.Sprintf("lease_dir = %q\n[network.default]\nguard = %s\n", b.TempDir(), guard))
		w.run(s.up, w.tap("vnet0"))
		tap := w.tap("vnet1")
		return func() time.Duration {
			d := w.run(s.up, tap)
			w.run(s.down, tap)
			return d
		}
	}
	m := sideBySide(b, side{"on", warm("true")}, side{"off", warm("false")},
		side{"on-xfer", transfer(b, "true")}, side{"off-xfer", transfer(b, "false")})
	ratio(b, m, "on", "off")
	ratio(b, m, "on-xfer", "off-xfer")
}

// xferBytes is what one transfer sends.
const xferBytes = 32 << 20

// transfer makes a network whose guard is guard, with two hand-configured
// guests (namespaces on veths), and returns a measurement of one transfer.
func transfer(b *testing.B, guard string) func() time.Duration {
	w := newWorld(b)
	w.writeConfig(fmt.Sprintf("lease_dir = %q\n[network.default]\nports = \"any\"\ndhcp = false\ndns = false\nguard = %s\n", b.TempDir(), guard))
	var guests [2]*testns.NS
	for i := range guests {
		g := testns.New(b)
		tap := fmt.Sprintf("vg%d", i)
		w.ns.MustRun("ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
		g.MustRun("ip", "addr", "add", fmt.Sprintf("192.168.100.%d/24", 10+i), "dev", "eth0")
		g.MustRun("ip", "link", "set", "eth0", "up")
		w.run(s(), tap)
		guests[i] = g
	}
	var ln net.Listener
	if err := guests[1].Do(func() (err error) { ln, err = net.Listen("tcp", "192.168.100.11:5001"); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	buf := make([]byte, 1<<20)
	return func() time.Duration {
		var c net.Conn
		if err := guests[0].Do(func() (err error) {
			c, err = net.DialTimeout("tcp", "192.168.100.11:5001", 5*time.Second)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for sent := 0; sent < xferBytes; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		return time.Since(start)
	}
}

// s is the NAT up script.
func s() string { return kvmnetNAT().up }
