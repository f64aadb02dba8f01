package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAllowFrom(t *testing.T) {
	const lab = "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n"
	f, err := Parse("k.toml", []byte("[network.default]\nallow_from = [\"lab\"]\n"+lab+"allow_from = [\"default\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{"default": {"kvlab0"}, "lab": {"br0"}} {
		if n, err := f.Network(name, NAT); err != nil || !slices.Equal(n.AllowFrom, want) {
			t.Errorf("network %s: allow_from bridges %q (%v), want %q", name, n.AllowFrom, err, want)
		}
	}
	for _, tc := range []struct{ file, want string }{
		{lab + "allow_from = [\"lab\"]\n", `k.toml:5: network.lab.allow_from: "lab": a network always reaches itself`},
		{lab + "allow_from = [\"dmz\"]\n", `k.toml:5: network.lab.allow_from: "dmz": no such network in k.toml`},
		{lab + "allow_from = [\"default\", \"default\"]\n", `k.toml:5: network.lab.allow_from: "default": named twice`},
		{"[network.default]\nallow_from = [\"lab\"]\n" + lab + "allow_from = [\"lab\"]\n", `k.toml:7: network.lab.allow_from: "lab": a network always reaches itself`},
	} {
		if _, err := Parse("k.toml", []byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.file, err, tc.want)
		}
	}
}
