package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuardLeasedPortOwnsItsAddress: a guest that took a DHCP lease and used
// it owns that address on its port, so a second, free address of the subnet
// is dropped ("one IPv4 source per port", docs/guard.md).
func TestGuardLeasedPortOwnsItsAddress(t *testing.T) {
	h, _, b := guardWorld(t, "nftables", "")
	c := h.guest("vnetC", "", "")
	h.mustHelper("kvmnet-natup", "vnetC")
	dir := t.TempDir()
	script, leased := filepath.Join(dir, "udhcpc.sh"), filepath.Join(dir, "ip")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nbusybox ifconfig \"$interface\" \"$ip\" netmask \"$subnet\"\necho \"$ip\" > "+leased+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := c.Run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-s", script); err != nil {
		t.Fatalf("no DHCP lease: %v\n%s", err, stderr)
	}
	got, _ := os.ReadFile(leased)
	own, err := netip.ParseAddr(strings.TrimSpace(string(got)))
	if err != nil {
		t.Fatalf("the lease's address: %v", err)
	}
	if _, _, err := c.Run("ping", "-c", "1", "-W", "2", gwAddr.String()); err != nil {
		t.Fatalf("a guest with a DHCP lease does not reach the gateway: %v", err)
	}
	rc, rb := rawPair(t, c, b)
	cm := macOf(c)
	ok := []byte("kvmnet-guard-leased-own")
	if err := rc.send(ether(broadcast, cm, 0x0800, ipv4(own, netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, ok)))); err != nil {
		t.Fatal(err)
	}
	if !rb.seen(ok, 2*time.Second) {
		t.Fatal("guest b does not see guest c's frame from its lease: the test cannot see anything")
	}
	second := netip.MustParseAddr("192.168.100.99")
	if second == own {
		second = second.Prev()
	}
	mark := []byte("kvmnet-guard-leased-second")
	if err := rc.send(ether(broadcast, cm, 0x0800, ipv4(second, netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, mark)))); err != nil {
		t.Fatal(err)
	}
	if rb.seen(mark, 700*time.Millisecond) {
		t.Errorf("guest c, holding lease %s, sent from a second address %s:\n%s", own, second, h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"))
	}
	if set := h.MustRun("nft", "list", "set", "bridge", "kvmnet-default", "ips"); !strings.Contains(set, own.String()) {
		t.Errorf("the guard did not learn guest c's leased address:\n%s", set)
	}
}
