package config

import (
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{
		"20mbit": 20_000_000, "512kbit": 512_000, "1.5gbit": 1_500_000_000, "2mbps": 16_000_000,
		"10mibit": 10 << 20, "8kbit": 8000, "100Gbit": 100_000_000_000, "1000000bit": 1_000_000,
	} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "20", "mbit", "20 mbit", "-1mbit", "1e3mbit", "0x10mbit", "20mb", "NaNmbit", "7kbit", "101gbit", "1_0mbit"} {
		if got, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %d, want an error", bad, got)
		}
	}
}

// TestBandwidthConfig: the syntax resolves to the network's rates
// and the host's own; a wrong one is an error at its line.
func TestBandwidthConfig(t *testing.T) {
	const file = `[network.lab]
mode      = "routed"
address   = "10.55.0.1/24"
bandwidth = { in = "20mbit", out = "10mbit" }
[[network.lab.host]]
mac = "52:54:00:00:55:21"
ip  = "10.55.0.21"
name = "web1"
bandwidth = { out = "5mbit" }
`
	f, err := Parse("k.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network("lab", NAT)
	if err != nil || n.Bandwidth != (Bandwidth{In: 20_000_000, Out: 10_000_000}) || !n.Shaped() {
		t.Fatalf("lab = %+v, %v", n.Bandwidth, err)
	}
	if b := n.Bandwidth.Over(*n.Hosts[0].Bandwidth); b != (Bandwidth{In: 20_000_000, Out: 5_000_000}) {
		t.Errorf("web1's rates %+v, want in 20mbit (the network's), out 5mbit", b)
	}
	for _, tc := range []struct{ edit, want string }{
		{`in = "20mbit"`, `k.toml:4: network.lab.bandwidth.in: rate "20mbits": want a number and a unit of tc's`},
		{`out = "5mbit"`, `k.toml:9: network.lab.host.bandwidth.out: rate "5mbits": want a number and a unit of tc's`},
	} {
		bad := strings.Replace(file, tc.edit, strings.Replace(tc.edit, `bit"`, `bits"`, 1), 1)
		if _, err := Parse("k.toml", []byte(bad)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("err = %v, want %s…", err, tc.want)
		}
	}
	for _, tc := range []struct{ file, want string }{
		{"[network.a]\nbandwidth = {}\n", "k.toml:2: network.a.bandwidth: {}: name in, out or both"},
		{"[network.a]\nbandwidth = { up = \"1mbit\" }\n", `k.toml:2: unknown key "network.a.bandwidth.up"`},
		{"[network.a]\nbandwidth = { in = \"1kbit\" }\n", `k.toml:2: network.a.bandwidth.in: rate "1kbit": want 8kbit to 100gbit`},
	} {
		if _, err := Parse("k.toml", []byte(tc.file)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("err = %v, want %s…", err, tc.want)
		}
	}
}
