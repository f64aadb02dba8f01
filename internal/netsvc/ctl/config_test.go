package ctl

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := Config{Gateway: netip.MustParsePrefix("192.168.100.1/24")}
	c.Defaults()
	if c.RangeStart.String() != "192.168.100.2" || c.RangeEnd.String() != "192.168.100.254" {
		t.Errorf("range %s-%s, want .2-.254", c.RangeStart, c.RangeEnd)
	}
	if c.LeaseTime != time.Hour || c.Domain != "kvm" {
		t.Errorf("lease %s domain %q", c.LeaseTime, c.Domain)
	}
	c = Config{Gateway: netip.MustParsePrefix("10.0.0.254/24"), Domain: ".Lab.Example."}
	c.Defaults()
	if c.RangeStart.String() != "10.0.0.1" || c.RangeEnd.String() != "10.0.0.253" || c.Domain != "lab.example" {
		t.Errorf("range %s-%s domain %q", c.RangeStart, c.RangeEnd, c.Domain)
	}
}

func TestValidate(t *testing.T) {
	if err := testConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Network = "" }, `network ""`},
		{func(c *Config) { c.Bridge = "a-very-long-bridge-name" }, `bridge "a-very-long-bridge-name"`},
		{func(c *Config) { c.Gateway = netip.MustParsePrefix("192.168.100.0/24") }, `gateway "192.168.100.0/24": is the network address`},
		{func(c *Config) { c.Gateway = netip.MustParsePrefix("192.168.100.1/31") }, `gateway "192.168.100.1/31"`},
		{func(c *Config) { c.Gateway = netip.MustParsePrefix("fd00::1/64") }, `must be IPv4`},
		{func(c *Config) { c.MTU = 20 }, `mtu "20"`},
		{func(c *Config) { c.RangeStart = netip.MustParseAddr("10.0.0.5") }, `range_start "10.0.0.5": outside`},
		{func(c *Config) { c.RangeEnd = netip.MustParseAddr("192.168.100.255") }, `range_end "192.168.100.255": outside`},
		{func(c *Config) { c.RangeEnd = netip.MustParseAddr("192.168.100.1") }, `range_end "192.168.100.1": before range_start`},
		{func(c *Config) { c.LeaseTime = time.Second }, `lease_time "1s"`},
		{func(c *Config) { c.Domain = "bad_domain" }, `domain "bad_domain"`},
		{func(c *Config) { c.Hosts = append(c.Hosts, Host{MAC: macN(1), IP: testGW}) }, `hosts.ip "192.168.100.1"`},
		{func(c *Config) { c.Hosts = append(c.Hosts, Host{MAC: macN(1), IP: testStatic.IP}) }, `given twice`},
		{func(c *Config) {
			c.Hosts = append(c.Hosts, Host{MAC: macN(1), IP: netip.MustParseAddr("192.168.100.7"), Name: "x y"})
		}, `hosts.name "x y"`},
		{func(c *Config) { c.Upstreams = []string{"8.8.8.8"} }, `upstreams "8.8.8.8"`},
		{func(c *Config) { c.Upstreams = []string{"192.168.100.1:53"} },
			`upstreams "192.168.100.1:53": is this network's own DNS server (its gateway): forwarding to it would loop`},
	}
	for _, tc := range cases {
		c := testConfig()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("got %v, want one line containing %q", err, tc.want)
		}
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	c := testConfig()
	c.Upstreams = []string{"127.0.0.53:53"}
	c.MTU, c.Router, c.Guard = 9000, true, true
	c.LeaseFile, c.PIDFile = "/x/l", "/x/p"
	path := filepath.Join(t.TempDir(), "c.json")
	if err := WriteConfig(path, c); err != nil {
		t.Fatal(err)
	}
	got, err := ReadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.LeaseTime != c.LeaseTime || got.Hosts[0].MAC.String() != testStatic.MAC.String() ||
		got.RangeEnd != c.RangeEnd || got.Upstreams[0] != c.Upstreams[0] || got.MTU != 9000 || got.PIDFile != "/x/p" || !got.Router || !got.Guard {
		t.Errorf("round trip: got %+v want %+v", got, c)
	}
}
