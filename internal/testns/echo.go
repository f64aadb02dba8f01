package testns

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// EchoSource listens in the namespace on network ("tcp4", "tcp6") and addr
// (":7777", "[::]:7777") until t ends, and answers each connection with the
// source address it saw, so that a probe tells masquerading apart.
func (ns *NS) EchoSource(t testing.TB, network, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// LoopbackReachedFrom sends a datagram from g to 127.0.0.1:7778 (which g
// routes through its gateway, as a hostile guest can) and reports whether a
// socket bound to ns's 127.0.0.1 got it within wait. UDP needs no answer: a
// TCP probe would fail for want of an ARP answer to ns's loopback address,
// not for want of a hole in the rules.
func (ns *NS) LoopbackReachedFrom(t testing.TB, g *NS, wait time.Duration) bool {
	t.Helper()
	var ln *net.UDPConn
	if err := ns.Do(func() (err error) {
		ln, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7778})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := g.Do(func() error {
		c, err := net.Dial("udp4", "127.0.0.1:7778")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = ln.SetReadDeadline(time.Now().Add(wait))
	_, _, err := ln.ReadFrom(make([]byte, 8))
	return err == nil
}
