package testns

import (
	"fmt"
	"net"
	"testing"
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
