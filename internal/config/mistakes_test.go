package config

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const lab = "[network.lab]\naddress = \"10.7.0.1/24\"\n"

func host(mac, ip, name string) string {
	return fmt.Sprintf("[[network.lab.host]]\nmac = %q\nip = %q\nname = %q\n", mac, ip, name)
}

// TestMistakesCaughtAtLoad: every mistake that would otherwise pass the
// load and fail later (or never) is an error naming the file, the line of
// the key and the key.
func TestMistakesCaughtAtLoad(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{lab + host("52:54:00:00:00:01", "10.7.0.10", "web") + host("52:54:00:00:00:02", "10.7.0.11", "Web"),
			`k.toml:10: network.lab.host.name: "web" is also host 52:54:00:00:00:01's`},
		{lab + host("52:54:00:00:00:01", "10.7.0.10", "a") + host("52:54:00:00:00:01", "10.7.0.11", "b"),
			`k.toml:8: network.lab.host.mac: "52:54:00:00:00:01" is also host 52:54:00:00:00:01's`},
		{lab + host("52:54:00:00:00:01", "10.7.0.10", "a") + host("52:54:00:00:00:02", "10.7.0.10", "b"),
			`k.toml:9: network.lab.host.ip: "10.7.0.10" is also host 52:54:00:00:00:01's`},
		{lab + host("52:54:00:00:00:01", "10.7.0.255", "a"), `k.toml:5: network.lab.host.ip: 10.7.0.255 is the network or broadcast address of 10.7.0.0/24`},
		{lab + host("52:54:00:00:00:01", "10.7.0.0", "a"), `k.toml:5: network.lab.host.ip: 10.7.0.0 is the network or broadcast address`},
		{lab + host("01:00:5e:00:00:01", "10.7.0.9", "a"), `k.toml:4: network.lab.host.mac: 01:00:5e:00:00:01 is a multicast address`},
		{lab + host("ff:ff:ff:ff:ff:ff", "10.7.0.9", "a"), `k.toml:4: network.lab.host.mac: ff:ff:ff:ff:ff:ff is a multicast address`},
		{lab + host("00:00:00:00:00:00", "10.7.0.9", "a"), `k.toml:4: network.lab.host.mac: 00:00:00:00:00:00: all zero`},
		{lab + "lease_time = \"721h\"\n", `k.toml:3: network.lab.lease_time: 721h0m0s: at most 720h (30 days)`},
		{lab + "lease_time = \"999999h\"\n", `k.toml:3: network.lab.lease_time: 999999h0m0s: at most 720h`},
		{lab + "dhcp_from = \"10.7.0.0\"\ndhcp_to = \"10.7.0.100\"\n", `k.toml:3: network.lab.dhcp_from: 10.7.0.0 is the network or broadcast address of 10.7.0.0/24`},
		{lab + "dhcp_from = \"10.7.0.2\"\ndhcp_to = \"10.7.0.255\"\n", `k.toml:4: network.lab.dhcp_to: 10.7.0.255 is the network or broadcast address`},
		{"[network.lab]\naddress = \"10.7.0.100/24\"\ndhcp_from = \"10.7.0.2\"\ndhcp_to = \"10.7.0.200\"\n", `k.toml:3: network.lab.dhcp_from: dhcp range 10.7.0.2-10.7.0.200 holds the gateway 10.7.0.100`},
		{lab + "mtu = 65522\n", `k.toml:3: network.lab.mtu: mtu 65522: want an integer from 576 to 65521`},
		{lab + "mtu = \"9000\"\n", `k.toml:3: network.lab.mtu: mtu "9000": want an integer`},
		{"lease_dir = \"leases\"\n" + lab, `k.toml:1: lease_dir: "leases": want an absolute path`},
		{lab + "upstreams = [\"10.7.0.1\"]\n", `k.toml:3: network.lab.upstreams: 10.7.0.1:53 is this network's own DNS forwarder`},
		{"[network.default]\n" + lab + "upstreams = [\"192.168.100.1\"]\n", `k.toml:4: network.lab.upstreams: 192.168.100.1:53 is network default's DNS forwarder`},
		{lab + "upstreams = [\"10.8.0.1:53\"]\n[network.dmz]\naddress = \"10.8.0.1/24\"\nupstreams = [\"10.7.0.1\"]\n",
			`k.toml:6: network.dmz.upstreams: 10.7.0.1:53 is network lab's DNS forwarder`},
	} {
		_, err := Parse("k.toml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("file %q:\n got %v\nwant …%s…", tc.file, err, tc.want)
		}
	}
}

// TestNotMistakes: what is near a mistake but fine stays fine.
func TestNotMistakes(t *testing.T) {
	for _, file := range []string{
		lab + "lease_time = \"720h\"\nmtu = 65521\ndhcp_from = \"10.7.0.2\"\ndhcp_to = \"10.7.0.254\"\n",
		lab + "upstreams = [\"10.7.0.1:5353\", \"192.168.100.1:5353\", \"10.0.0.53\"]\n",
		lab + "upstreams = [\"192.168.100.1\"]\n", // a home router's address; the default network is not in the file
		"[network.default]\nmode = \"isolated\"\n" + lab + "upstreams = [\"192.168.100.1\"]\n",
		lab + "upstreams = [\"10.8.0.1\"]\n[network.dmz]\naddress = \"10.8.0.1/24\"\ndns = false\n",
		lab + host("52:54:00:00:00:01", "10.7.0.254", "a") + host("52:54:00:00:00:02", "10.7.0.2", ""),
		"[network.a]\naddress = \"10.0.0.1/24\"\n[network.b]\naddress = \"10.0.1.1/24\"\n[network.c]\naddress = \"10.1.0.1/16\"\n",
	} {
		if _, err := Parse("k.toml", []byte(file)); err != nil {
			t.Errorf("file %q: %v", file, err)
		}
	}
}

// TestLongValuesCut: a value is echoed at most 40 bytes long, quoted, with
// its length, so one long value cannot make a huge error or log line.
func TestLongValuesCut(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	for _, file := range []string{
		"[network.a]\nmode = \"" + long + "\"\n",
		"[network.a]\nbridge = \"" + long + "\"\n",
		"[network.a]\nmtu = [" + strings.Repeat("1,", 50_000) + "1]\n",
		"[network.a]\n" + long + " = 1\n",
		"[network.a]\n\"" + long + "\\n\" = 1\n",
		"[network.a]\naddress = \"10.0.0.1/24\"\n[[network.a.host]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.5\"\nname = \"" + long + "\"\n",
	} {
		_, err := Parse("k.toml", []byte(file))
		if err == nil || len(err.Error()) > 300 || strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("file of %d bytes: error of %d bytes: %.300q", len(file), len(fmt.Sprint(err)), fmt.Sprint(err))
		}
	}
	if got := Quote(strings.Repeat("é", 30)); got != `"`+strings.Repeat("é", 20)+`"…(60 bytes)` {
		t.Errorf("Quote cuts inside a character: %s", got)
	}
}

// TestHostileFileBounded: files built to make the TOML decoder spend
// memory quadratic in their nesting are refused before decoding, and the
// worst a file within the bounds can do costs little.
func TestHostileFileBounded(t *testing.T) {
	deep := 2000
	for _, tc := range []struct {
		name, file string
		refused    bool
	}{
		{"nested inline tables", "x = " + strings.Repeat("{a=", deep) + "1" + strings.Repeat("}", deep) + "\n", true},
		{"nested arrays", "x = " + strings.Repeat("[", deep) + strings.Repeat("]", deep) + "\n", true},
		{"deep table header", "[" + strings.Repeat("a.", deep) + "a]\n", true},
		{"deep dotted key", strings.Repeat("a.", deep) + "a = 1\n", true},
		{"over the size cap", strings.Repeat("# padding\n", MaxFileSize/10+1), true},
		{"inline tables at max depth, to the size cap", repeatTo("x%d = {b={c={d={e={f={g={h=1}}}}}}}\n", MaxFileSize), false},
		{"inline tables, to the size cap", repeatTo("x%d = {b=1}\n", MaxFileSize), false},
		{"headers at max depth, to the size cap", repeatTo("[a%d.b.c.d.e.f]\nx=[[1]]\n", MaxFileSize), false},
		{"array tables at max depth, to the size cap", repeatTo("[[a.b.c.d.e%d]]\n", MaxFileSize), false},
		{"many networks", manyNetworks(5_000), false},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Parse("k.toml", []byte(tc.file))
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s (%d bytes): %d MB allocated: %.100v", tc.name, len(tc.file), alloc>>20, err)
		if refused := err != nil && strings.Contains(err.Error(), "refused"); tc.refused && !refused {
			t.Errorf("%s: not refused before decoding: %.200v", tc.name, err)
		}
		if alloc > 200<<20 {
			t.Errorf("%s: %d MB allocated, want at most 200", tc.name, alloc>>20)
		}
	}
}

// repeatTo repeats format, with %d the repeat's number, to about size bytes.
func repeatTo(format string, size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size-len(format)-10; i++ {
		fmt.Fprintf(&b, format, i)
	}
	return b.String()
}

// manyNetworks is n networks with distinct bridges and subnets: the shared
// checks must not compare every pair.
func manyNetworks(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "[network.n%d]\naddress = \"10.%d.%d.1/24\"\n", i, i/256, i%256)
	}
	return b.String()
}

func TestCheckIfNameControls(t *testing.T) {
	for _, bad := range []string{"vnet\x00", "a\x1bb", "a\x7fb", "\xff\xfe", "a\u200bb", "a\u202eb", "a\u00a0b"} {
		if err := CheckIfName(bad); err == nil || !strings.Contains(err.Error(), "control character or a byte that does not print") && !strings.Contains(err.Error(), "white space") {
			t.Errorf("CheckIfName(%q) = %v", bad, err)
		} else if !strings.Contains(err.Error(), Quote(bad)) {
			t.Errorf("CheckIfName(%q): the name is not quoted: %v", bad, err)
		}
	}
	for _, good := range []string{"--help", "vnet-é", "tap.1"} {
		if err := CheckIfName(good); err != nil {
			t.Errorf("CheckIfName(%q): %v", good, err)
		}
	}
}

// TestMistakesInOneForm: every mistake reads FILE:LINE: KEY: value: want …,
// at the key's own line: wrong types, a DHCP pool given by one end, a routed
// network without an address, keys that do not apply to the network's mode.
func TestMistakesInOneForm(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"dhcp a string", lab + "dhcp = \"yes\"\n", `k.toml:3: network.lab.dhcp: "yes": want true or false`},
		{"dns a string", lab + "\ndns = \"no\"\n", `k.toml:4: network.lab.dns: "no": want true or false`},
		{"dhcp_router a number", lab + "dhcp_router = 1\n", `k.toml:3: network.lab.dhcp_router: 1: want true or false`},
		{"address a number", "[network.lab]\naddress = 5\n", `k.toml:2: network.lab.address: 5: want an address in quotes, like "10.0.0.1/24"`},
		{"upstreams a string", lab + "upstreams = \"1.1.1.1\"\n", `k.toml:3: network.lab.upstreams: "1.1.1.1": want an array of strings`},
		{"allow with a number", lab + "allow = [\"@kvm\", 1000]\n", `k.toml:3: network.lab.allow: an array: want an array of strings`},
		{"host a number", lab + "host = 3\n", `k.toml:3: network.lab.host: 3: want an array of tables`},
		{"host's name a number", lab + host("52:54:00:00:00:01", "10.7.0.10", "a") + "[[network.lab.host]]\nmac = \"52:54:00:00:00:02\"\nip = \"10.7.0.11\"\nname = 7\n",
			`k.toml:10: network.lab.host.name: 7: want a string`},
		{"mode a boolean", "[network.lab]\nmode = true\n", `k.toml:2: network.lab.mode: true: want isolated, hostonly, nat or bridged, in quotes`},
		{"dhcp_to alone", lab + "dhcp_to = \"10.7.0.99\"\n", `k.toml:3: network.lab.dhcp_to: 10.7.0.99: want dhcp_from beside it: a DHCP pool is given by both ends or neither`},
		{"dhcp_from alone", lab + "dhcp_from = \"10.7.0.9\"\n", `k.toml:3: network.lab.dhcp_from: 10.7.0.9: want dhcp_to beside it: a DHCP pool is given by both ends or neither`},
		{"nat without address", "[network.lab]\nmode = \"nat\"\n", `k.toml:2: network.lab.mode: "nat": want an address beside it (e.g. address = "10.0.0.1/24")`},
		{"hostonly without address", "[network.lab]\nbridge = \"kvlab0\"\nmode = \"host-only\"\n", `k.toml:3: network.lab.mode: "hostonly": want an address beside it (e.g. address = "10.0.0.1/24")`},
		{"address on isolated", "[network.lab]\nmode = \"isolated\"\naddress = \"10.7.0.1/24\"\n",
			`k.toml:3: network.lab.address: "10.7.0.1/24": want it only on hostonly and nat networks, not on mode isolated`},
		{"dhcp on isolated", "[network.lab]\nmode = \"isolated\"\ndhcp = true\n",
			`k.toml:3: network.lab.dhcp: true: want it only on hostonly and nat networks, not on mode isolated`},
		{"lease_time on isolated", "[network.lab]\nlease_time = \"2h\"\nmode = \"isolated\"\n",
			`k.toml:2: network.lab.lease_time: "2h": want it only on hostonly and nat networks, not on mode isolated`},
		{"address on bridged", "[network.lan]\nbridge = \"br-lan\"\nmode = \"bridged\"\naddress = \"10.7.0.1/24\"\n",
			`k.toml:4: network.lan.address: "10.7.0.1/24": want it only on hostonly and nat networks, not on mode bridged`},
		{"mtu on bridged", "[network.lan]\nmode = \"bridged\"\nmtu = 9000\n",
			`k.toml:3: network.lan.mtu: 9000: want it only on isolated, hostonly and nat networks, not on mode bridged`},
	} {
		_, err := Parse("k.toml", []byte(tc.file))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, err, tc.want)
		}
	}
}

// TestModeFromHelper: a network with no mode in the file gets the helper's,
// and the keys that mode has no use for are refused then, at their line.
func TestModeFromHelper(t *testing.T) {
	f, err := Parse("k.toml", []byte("[network.lab]\naddress = \"10.7.0.1/24\"\ndhcp = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Network("lab", NAT); err != nil {
		t.Errorf("lab as nat: %v", err)
	}
	want := `k.toml:2: network.lab.address: "10.7.0.1/24": want it only on hostonly and nat networks, not on mode isolated`
	if _, err := f.Network("lab", Isolated); err == nil || err.Error() != want {
		t.Errorf("lab as isolated: %v, want %s", err, want)
	}
}

// TestBrokenNetworkIsLocal: a mistake in one network's section breaks that
// network only; the others resolve. A mistake outside the sections breaks
// the file.
func TestBrokenNetworkIsLocal(t *testing.T) {
	file := "[network.good]\naddress = \"10.8.0.1/24\"\n" +
		"[network.bad]\naddress = \"10.9.0.1/24\"\nmtu = 12\n" +
		"[network.typo]\nadress = \"10.10.0.1/24\"\n" +
		"[network.zclash]\nbridge = \"good\"\n"
	f, err := Parse("k.toml", []byte(file))
	if f == nil {
		t.Fatalf("the file was refused whole: %v", err)
	}
	if want := "k.toml:5: network.bad.mtu: mtu 12: want an integer from 576 to 65521"; err == nil || err.Error() != want {
		t.Errorf("Parse's error: %v, want the first broken network's, %s", err, want)
	}
	for name, want := range map[string]string{
		"bad":    "k.toml:5: network.bad.mtu: mtu 12: want an integer from 576 to 65521",
		"typo":   `k.toml:7: unknown key "network.typo.adress"`,
		"zclash": "k.toml:9: network.zclash.bridge: good: want a bridge of its own, not network good's",
	} {
		if _, err := f.Network(name, NAT); err == nil || err.Error() != want {
			t.Errorf("network %s: %v, want %s", name, err, want)
		}
	}
	if got := f.BrokenNames(); !slices.Equal(got, []string{"bad", "typo", "zclash"}) {
		t.Errorf("broken: %v", got)
	}
	for _, name := range []string{"good", "default"} {
		if _, err := f.Network(name, NAT); err != nil {
			t.Errorf("network %s beside broken ones: %v", name, err)
		}
	}
	for _, file := range []string{"[network.a]\nmtu = \n", "firewall = \"pf\"\n[network.a]\n", "colour = 1\n"} {
		if f, err := Parse("k.toml", []byte(file)); f != nil || err == nil {
			t.Errorf("file %q: %v, want refused whole", file, err)
		}
	}
}
