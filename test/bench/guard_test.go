package bench

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// BenchmarkGuardWarm: what the guard (docs/guard.md) costs a warm up: a
// network with the guard on and off (on-ms, off-ms: the hot file the same
// but for its group line, the attaching request one attribute longer).
func BenchmarkGuardWarm(b *testing.B) {
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
	m := sideBySide(b, side{"on", warm("true")}, side{"off", warm("false")})
	ratio(b, m, "on", "off")
}

// BenchmarkGuardThroughput: the time 32 MiB of TCP take from one namespace
// guest to another through the bridge, where every frame of the sender's
// meets the guard's chains, with the guard on and off. Apart from
// BenchmarkGuardWarm: what a transfer leaves the kernel to do would fall on
// the up measured next.
func BenchmarkGuardThroughput(b *testing.B) {
	m := sideBySide(b, side{"on", transfer(b, "true")}, side{"off", transfer(b, "false")})
	ratio(b, m, "on", "off")
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
		defer c.Close()
		start := time.Now()
		for sent := 0; sent < xferBytes; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		// Until the receiver has read it all and closed: nothing of this
		// transfer is left running when the next side is measured.
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, c)
		return time.Since(start)
	}
}

// s is the NAT up script.
func s() string { return kvmnetNAT().up }
