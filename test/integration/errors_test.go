package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fwd is a config of the default network with one forward of the given keys.
func fwd(keys string) string { return "[network.default]\n[[network.default.forward]]\n" + keys + "\n" }

// TestBadInput: every bad input gets one line on stderr naming the thing and
// the reason, a non-zero exit, and leaves nothing behind.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, config, prog, tap string
		setup                   [][]string
		env                     []string
		want                    string
	}{
		{name: "no argument", prog: "kvmnet-natup", tap: "\x00", want: "kvmnet-natup: want exactly one argument, the tap name, got 0"},
		{name: "empty", prog: "kvmnet-natup", tap: "", want: "kvmnet-natup: tap: interface name is empty"},
		{name: "too long", prog: "kvmnet-ifup", tap: "0123456789abcdef", want: `kvmnet-ifup: tap: interface name "0123456789abcdef" is longer than 15 bytes`},
		{name: "slash", prog: "kvmnet-natup", tap: "a/b", want: `kvmnet-natup: tap: interface name "a/b" contains '/', ':' or white space`},
		{name: "space", prog: "kvmnet-natup", tap: "a b", want: `kvmnet-natup: tap: interface name "a b" contains`},
		{name: "control character", prog: "kvmnet-natup", tap: "vn\x1b[2Jet",
			want: `kvmnet-natup: tap: interface name "vn\x1b[2Jet" contains a control character or a byte that does not print`},
		{name: "long", prog: "kvmnet-natup", tap: strings.Repeat("x", 100000),
			want: `kvmnet-natup: tap: interface name "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"…(100000 bytes) is longer than 15 bytes`},
		{name: "no such tap", prog: "kvmnet-natup", tap: "vnet9", want: "kvmnet-natup: find tap: vnet9: no such link"},
		{name: "bridge name held by a veth", prog: "kvmnet-natup", tap: "vnet0",
			setup: [][]string{{"ip", "link", "add", "br0", "type", "veth", "peer", "name", "br0p"}},
			want:  "kvmnet-natup: make bridge br0: br0 is a veth link: not a bridge"},
		{name: "bad config", prog: "kvmnet-natup", tap: "vnet0", config: "[network.default]\nmtu = 12\n",
			want: "kvmnet.toml:3: network.default.mtu: mtu 12: want an integer from 576 to 65521"},
		{name: "forward proto", prog: "kvmnet-natup", tap: "vnet0", config: fwd("proto = \"icmp\"\nport = 80\nto = \"192.168.100.5:80\""),
			want: `kvmnet.toml:4: network.default.forward.proto: proto "icmp": want "tcp" or "udp"`},
		{name: "forward outside the subnet", prog: "kvmnet-natup", tap: "vnet0", config: fwd("proto = \"tcp\"\nport = 80\nto = \"10.1.2.3:80\""),
			want: `kvmnet.toml:6: network.default.forward.to: "10.1.2.3:80": 10.1.2.3 is outside the network's subnet 192.168.100.0/24`},
		{name: "forward to the gateway", prog: "kvmnet-natup", tap: "vnet0", config: fwd("proto = \"tcp\"\nport = 80\nto = \"192.168.100.1:80\""),
			want: `192.168.100.1 is the gateway, not a guest`},
		{name: "forward ranges of two sizes", prog: "kvmnet-natup", tap: "vnet0", config: fwd("proto = \"udp\"\nport = \"5000-5009\"\nto = \"192.168.100.5:6000\""),
			want: `kvmnet.toml:6: network.default.forward.to: "192.168.100.5:6000": 1 ports, but port 5000-5009 has 10`},
		{name: "forward port twice", prog: "kvmnet-natup", tap: "vnet0",
			config: fwd("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\"") + fwd("proto = \"tcp\"\nport = \"79-81\"\nto = \"192.168.100.6:79-81\"")[len("[network.default]\n"):],
			want:   `kvmnet.toml:9: network.default.forward.port: tcp 79-81 is already forwarded by network default's forward 1`},
		{name: "forward to an unknown host", prog: "kvmnet-natup", tap: "vnet0", config: fwd("proto = \"tcp\"\nport = 80\nto = \"web:80\""),
			want: `"web" is neither an IP address nor a static host of the network`},
		{name: "forward IPv6 without address6", prog: "kvmnet-natup", tap: "vnet0", config: fwd("proto = \"tcp\"\nport = 80\nto = \"[fd00:6b76:6d6e::21]:80\""),
			want: `kvmnet.toml:6: network.default.forward.to: "[fd00:6b76:6d6e::21]:80": fd00:6b76:6d6e::21: the network has no IPv6 prefix (set address6)`},
		{name: "forward on an isolated network", prog: "kvmnet-ifup", tap: "vnet0", config: fwd("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\""),
			want: "kvmnet-ifup: network default: its forwards need mode nat, not isolated"},
		{name: "undefined network", prog: "kvmnet-natup@lab", tap: "vnet0", want: "kvmnet-natup: network lab: not defined in"},
		{name: "subnet overlaps", prog: "kvmnet-natup", tap: "vnet0",
			setup: [][]string{{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"}, {"ip", "addr", "add", "192.168.100.7/16", "dev", "eth0"}},
			want:  "kvmnet-natup: add 192.168.100.1/24 to br0: subnet 192.168.100.0/24 overlaps 192.168.100.7/16 on eth0"},
		{name: "daemon cannot start", prog: "kvmnet-natup", tap: "vnet0",
			setup: [][]string{{"mkdir", "$DIR/default@$NS.leases"}}, // the lease file in this namespace: a directory
			want:  "kvmnet-natup: bind DHCP/DNS on br0: lease file $DIR/default@$NS.leases: is a directory"},
		{name: "no iptables", prog: "kvmnet-natup", tap: "vnet0", config: "firewall = \"iptables\"\n",
			want: "kvmnet-natup: install rules for default: iptables not found in /usr/sbin, /sbin, /usr/bin or /bin"},
		{name: "bad firewall", prog: "kvmnet-natup", tap: "vnet0", config: "firewall = \"pf\"\n", want: `kvmnet.toml:2: firewall "pf": want auto, nftables or iptables`},
		{name: "not a tap", prog: "kvmnet-natup", tap: "eth1",
			setup: [][]string{{"ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"}},
			want:  `kvmnet-natup: tap eth1 is a veth link, not a tap: network default attaches only taps (ports = "any" in its configuration allows any link)`},
		{name: "loopback", prog: "kvmnet-natup", tap: "lo", config: "[network.default]\nports = \"any\"\n",
			want: "kvmnet-natup: attach lo to br0: invalid argument"}, // named once, and lo keeps its MTU
		{name: "tap of another bridge", prog: "kvmnet-natup", tap: "vnet0",
			setup: [][]string{{"ip", "link", "add", "brx", "type", "bridge"}, {"ip", "link", "set", "vnet0", "master", "brx"}},
			want:  "kvmnet-natup: tap vnet0 is a port of brx already: refusing to move it to br0"},
		{name: "isolated on a bridge with the host's address", prog: "kvmnet-ifup", tap: "vnet0",
			setup: [][]string{{"ip", "link", "add", "br0", "type", "bridge"}, {"ip", "addr", "add", "10.1.0.1/24", "dev", "br0"}},
			want:  `kvmnet-ifup: make bridge br0: bridge br0 carries the host's address 10.1.0.1/24: an isolated network would cut it off; for guests on that bridge's LAN use mode = "bridged"`},
		{name: "isolated on a bridge with a NIC", prog: "kvmnet-ifup", tap: "vnet0",
			setup: [][]string{{"ip", "link", "add", "br0", "type", "bridge"}, {"ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"}, {"ip", "link", "set", "eth1", "master", "br0"}},
			want:  `kvmnet-ifup: make bridge br0: bridge br0 has a port kvmnet did not attach, eth1: an isolated network would cut it off; for guests on that bridge's LAN use mode = "bridged"`},
		{name: "bridged without its bridge", prog: "kvmnet-ifup@lan", tap: "vnet0", config: "[network.lan]\nmode = \"bridged\"\n",
			want: "kvmnet-ifup: find bridge lan: no bridge lan: a bridged network's bridge is made by the admin, with the host's NIC, never by kvmnet"},
		{name: "no CAP_NET_ADMIN", prog: "kvmnet-natup", tap: "vnet0", want: "kvmnet-natup: needs CAP_NET_ADMIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, "", tc.config)
			h.taps("vnet", 1)
			for _, argv := range tc.setup {
				for i := range argv {
					argv[i] = strings.ReplaceAll(argv[i], "$DIR", filepath.Dir(h.Config))
					argv[i] = strings.ReplaceAll(argv[i], "$NS", h.Name)
				}
				h.MustRun(argv...)
			}
			rules, links, fwd := h.rules(), h.Links(), h.Sysctl("net.ipv4.ip_forward")
			var stderr string
			var err error
			switch tc.name {
			case "no CAP_NET_ADMIN":
				stderr, err = h.withCaps(tc.prog, tc.tap, "-all")
			case "no iptables":
				stderr, err = h.helperAs(withoutSystemBin, tc.prog, tc.tap)
			default:
				stderr, err = h.helper(tc.prog, tc.tap, tc.env...)
			}
			if err == nil {
				t.Fatalf("succeeded; stderr: %s", stderr)
			}
			if want := strings.NewReplacer("$DIR", filepath.Dir(h.Config), "$NS", h.Name).Replace(tc.want); !strings.Contains(stderr, want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("stderr has %d lines, want one: %q", n+1, stderr)
			}
			if out := h.MustRun("ip", "link", "show", "lo"); tc.tap == "lo" && !strings.Contains(out, "mtu 65536") {
				t.Errorf("lo's MTU changed: %s", out)
			}
			h.SetLinks(links)
			h.assertClean(rules, fwd)
		})
	}
}

// dropCaps runs a helper as uid 0 with only the capabilities caps
// (setpriv syntax, e.g. "-all,+net_admin") in every set.
func (h *host) withCaps(prog, tap, caps string) (string, error) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		h.T.Skip("setpriv not installed (util-linux)")
	}
	sets := []string{"setpriv", "--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps, "--"}
	return h.helperAs(sets, prog, tap)
}

// TestNetAdminOnly: under libvirt the helpers hold CAP_NET_ADMIN and nothing else.
func TestNetAdminOnly(t *testing.T) { matrix(t, testNetAdminOnly) }

func testNetAdminOnly(t *testing.T, fw string) {
	h := newHost(t, fw, "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	tap := h.taps("vnet", 1)[0]
	for _, prog := range []string{"kvmnet-natup", "kvmnet-natdown"} {
		if stderr, err := h.withCaps(prog, tap, "-all,+net_admin"); err != nil {
			t.Fatalf("%s with CAP_NET_ADMIN only: %v\n%s", prog, err, stderr)
		}
		if prog == "kvmnet-natup" && h.Master(tap) != "br0" {
			t.Fatal("tap not attached")
		}
	}
	h.MustRun("ip", "link", "del", tap)
	h.assertClean(rules, fwd)
}

// withoutSystemBin runs its arguments in a mount namespace of their own
// (private: nothing leaks to the host) where /usr/sbin, /sbin, /bin and
// /usr/bin are empty, so that no iptables is installed; PATH would not hide it.
var withoutSystemBin = []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
	`for d in /usr/sbin /sbin /bin /usr/bin; do [ -L $d ] || mount -t tmpfs none $d || exit 9; done; exec "$@"`, "sh"}

// hostilePath is a directory of stubs named like every program kvmnet runs,
// each leaving a mark when run, for a PATH that must be ignored.
func hostilePath(t *testing.T) (dir string, ran func() bool) {
	dir = t.TempDir()
	for _, name := range []string{"kvmnet", "kvmnet-netsvc", "iptables", "iptables-save", "iptables-restore", "iptables-nft", "xtables-nft-multi"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\ntouch "+dir+"/ran\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, func() bool { _, err := os.Stat(filepath.Join(dir, "ran")); return err == nil }
}

// TestNoKvmnetBinary: a NAT helper installed without kvmnet, which sets
// networks up, fails in one line naming where it looked, and leaves nothing
// made. A kvmnet in PATH is not run.
func TestNoKvmnetBinary(t *testing.T) { matrix(t, testNoKvmnetBinary) }

func testNoKvmnetBinary(t *testing.T, fw string) {
	if _, err := os.Stat("/usr/bin/kvmnet"); err == nil {
		t.Skip("/usr/bin/kvmnet is installed")
	}
	root := t.TempDir()
	helper := installAt(t, root, "libexec", "kvmnet-natup")
	refusedWhole(t, fw, helper, "kvmnet-natup: kvmnet binary not found next to "+helper+", in "+
		filepath.Join(root, "bin")+" or at /usr/bin/kvmnet (it sets networks up)")
}

// TestNoDaemonBinary: kvmnet installed without the DHCP/DNS daemon's binary:
// a network's first up fails in one line naming where kvmnet looked for it,
// and leaves nothing made. A kvmnet-netsvc in PATH is not run.
func TestNoDaemonBinary(t *testing.T) { matrix(t, testNoDaemonBinary) }

func testNoDaemonBinary(t *testing.T, fw string) {
	if _, err := os.Stat("/usr/libexec/kvmnet-netsvc"); err == nil {
		t.Skip("/usr/libexec/kvmnet-netsvc is installed")
	}
	root := t.TempDir()
	helper := installAt(t, root, "libexec", "kvmnet-natup")
	kvmnet := installAt(t, root, "bin", "kvmnet")
	refusedWhole(t, fw, helper, "kvmnet-natup: start DHCP/DNS on br0: kvmnet-netsvc binary not found next to "+kvmnet+", in "+
		filepath.Join(root, "libexec")+" or at /usr/libexec/kvmnet-netsvc")
}

// installAt copies bin/NAME to root/dir/NAME and returns its path.
func installAt(t *testing.T, root, dir, name string) string {
	t.Helper()
	p := filepath.Join(root, dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(bin, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// refusedWhole runs helper for a new tap with a PATH of stubs (hostilePath)
// and wants it to fail with one line containing want, run no stub, and
// leave the namespace as it was.
func refusedWhole(t *testing.T, fw, helper, want string) {
	t.Helper()
	stubs, ran := hostilePath(t)
	h := newHost(t, fw, "")
	tap := h.taps("vnet", 1)[0]
	rules, links, fwd := h.rules(), h.Links(), h.Sysctl("net.ipv4.ip_forward")
	_, stderr, err := h.Run("env", "KVMNET_CONFIG="+h.Config, "PATH="+stubs, helper, tap)
	if err == nil {
		t.Fatalf("succeeded; stderr: %s", stderr)
	}
	if !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("stderr = %q, want one line containing %q", stderr, want)
	}
	if ran() {
		t.Error("a program from PATH was run")
	}
	h.SetLinks(links)
	h.assertClean(rules, fwd)
}

// TestHostilePathIgnored: with PATH full of stubs named like iptables and
// kvmnet, a NAT network still comes up and goes down with the system's
// iptables and the kvmnet beside the helpers, and no stub runs. (The
// nftables backend runs no program at all: see TestNoIptablesPrograms.)
func TestHostilePathIgnored(t *testing.T) {
	stubs, ran := hostilePath(t)
	h := newHost(t, "iptables", "")
	tap := h.taps("vnet", 1)[0]
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	for _, prog := range []string{"kvmnet-natup", "kvmnet-natdown"} {
		if stderr, err := h.helper(prog, tap, "PATH="+stubs); err != nil {
			t.Fatalf("%s with a hostile PATH: %v\n%s", prog, err, stderr)
		}
		if prog == "kvmnet-natup" && h.kvmnetRules() == 0 {
			t.Error("no rules after natup")
		}
	}
	if ran() {
		t.Error("a program from PATH was run")
	}
	h.MustRun("ip", "link", "del", tap)
	h.assertClean(rules, fwd)
}
