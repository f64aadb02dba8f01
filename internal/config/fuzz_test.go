package config

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// oneShortLine fails t unless err is a single line short enough for a log.
func oneShortLine(t *testing.T, err error) {
	t.Helper()
	if s := err.Error(); strings.ContainsAny(s, "\n\r") || len(s) > 400 || !utf8.ValidString(s) {
		t.Fatalf("error is not one short line of text (%d bytes): %q", len(s), s)
	}
}

// FuzzLoad: any bytes are either a configuration whose every network
// resolves, or a one-line error; never a panic. The fuzzer's own time and
// memory limits per input catch a file that costs too much.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(lab + host("52:54:00:00:00:01", "10.7.0.10", "web") + host("52:54:00:00:00:02", "10.7.0.11", "web")))
	f.Add([]byte(lab + "upstreams = [\"10.8.0.1:53\"]\n[network.dmz]\naddress = \"10.8.0.1/24\"\nupstreams = [\"10.7.0.1\"]\n"))
	f.Add([]byte("x = {a={b={c=1}}}\n[[network.a.host]]\n'''a\n''' = \"\"\"\n\\\"\"\"\"\n"))
	f.Add([]byte("[network.default]\nmtu = 1500\ndhcp_from = \"192.168.100.10\"\ndhcp_to = \"192.168.100.20\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("k.toml", b)
		if err != nil {
			oneShortLine(t, err)
			return
		}
		for name := range c.Networks {
			for _, mode := range []Mode{Isolated, HostOnly, NAT} {
				if _, err := c.Network(name, mode); err != nil {
					oneShortLine(t, err)
				}
			}
		}
	})
}

// FuzzTapName: a tap name CheckIfName accepts is one the kernel could take
// and that prints as itself; a refused one gets a one-line error that
// quotes it, cut.
func FuzzTapName(f *testing.F) {
	for _, s := range []string{"vnet0", "--help", "a b", "a\x1bb", "\xff", "0123456789abcdef", "é", "a\u202eb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckIfName(s)
		if err != nil {
			oneShortLine(t, err)
			if s != "" && !strings.Contains(err.Error(), Quote(s)) {
				t.Fatalf("error does not quote the name: %v", err)
			}
			return
		}
		if len(s) == 0 || len(s) > 15 || strings.ContainsAny(s, "/: \t\n\r\v\f\x00") || !printable(s) {
			t.Fatalf("CheckIfName(%q) accepted it", s)
		}
	})
}
