package config

import (
	"strings"
	"testing"
)

// TestGuardKeys: guard defaults on but for bridged, isolate_guests off;
// guard on a bridged network and isolate_guests on an isolated one are
// errors naming the file, line, key and mode.
func TestGuardKeys(t *testing.T) {
	for _, tc := range []struct {
		file          string
		mode          Mode
		guard, isolat bool
	}{
		{lab, NAT, true, false},
		{lab + "guard = false\n", NAT, false, false},
		{lab + "mode = \"hostonly\"\nisolate_guests = true\n", HostOnly, true, true},
		{"[network.lab]\nmode = \"isolated\"\n", Isolated, true, false},
		{"[network.lab]\nmode = \"isolated\"\nguard = false\nisolate_guests = false\n", Isolated, false, false},
		{"[network.lab]\nmode = \"bridged\"\nbridge = \"br-lan\"\n", Bridged, false, false},
		{"[network.lab]\nmode = \"bridged\"\nbridge = \"br-lan\"\nisolate_guests = true\n", Bridged, false, true},
	} {
		f, err := Parse("k.toml", []byte(tc.file))
		if err != nil {
			t.Fatalf("%q: %v", tc.file, err)
		}
		n, err := f.Network("lab", NAT)
		if err != nil || n.Mode != tc.mode || n.Guard != tc.guard || n.IsolateGuests != tc.isolat {
			t.Errorf("%q: %s guard %t isolate %t, %v; want %s %t %t", tc.file, n.Mode, n.Guard, n.IsolateGuests, err, tc.mode, tc.guard, tc.isolat)
		}
	}
	for _, tc := range []struct{ file, want string }{
		{"[network.lab]\nmode = \"bridged\"\nbridge = \"br-lan\"\nguard = true\n", `k.toml:4: network.lab.guard: true: want it only on isolated, hostonly, nat and routed networks, not on mode bridged`},
		{"[network.lab]\nmode = \"bridged\"\nbridge = \"br-lan\"\nguard = false\n", `k.toml:4: network.lab.guard: false: want it only on isolated, hostonly, nat and routed networks, not on mode bridged`},
		{"[network.lab]\nmode = \"isolated\"\nisolate_guests = true\n", `k.toml:3: network.lab.isolate_guests: true: want false on mode isolated`},
		{lab + "guard = \"yes\"\n", `k.toml:3: network.lab.guard: "yes": want true or false`},
		{lab + "isolate_guests = 1\n", `k.toml:3: network.lab.isolate_guests: 1: want true or false`},
	} {
		_, err := Parse("k.toml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("file %q:\n got %v\nwant …%s…", tc.file, err, tc.want)
		}
	}
}

// TestGuardChangesHash: turning the guard or the isolation on or off is a
// reconfiguration of a running network.
func TestGuardChangesHash(t *testing.T) {
	hash := func(file string) string {
		f, err := Parse("k.toml", []byte(file))
		if err != nil {
			t.Fatal(err)
		}
		n, err := f.Network("lab", NAT)
		if err != nil {
			t.Fatal(err)
		}
		return n.Hash
	}
	a, b, c := hash(lab), hash(lab+"guard = false\n"), hash(lab+"isolate_guests = true\n")
	if a == b || a == c || b == c {
		t.Errorf("hashes %s %s %s, want three different", a, b, c)
	}
}
