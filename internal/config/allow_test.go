package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAllow(t *testing.T) {
	f, err := Parse("kvmnet.toml", []byte(`
[network.lab]
mode = "isolated"
allow = ["@lab", "alice"]
[network.dmz]
mode = "isolated"
[network.closed]
mode = "isolated"
allow = []
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want []Allowed
	}{
		{"default", []Allowed{"@kvm"}}, // not in the file: group kvm
		{"lab", []Allowed{"@lab", "alice"}},
		{"dmz", []Allowed{}},    // root only
		{"closed", []Allowed{}}, // root only, said so
	} {
		n, err := f.Network(tc.name, Isolated)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(n.Allow, tc.want) {
			t.Errorf("network %s: allow %q, want %q", tc.name, n.Allow, tc.want)
		}
	}
	g, ok := Allowed("@lab").Group()
	if !ok || g != "lab" {
		t.Errorf(`"@lab".Group() = %q, %v`, g, ok)
	}
	if _, ok := Allowed("alice").Group(); ok {
		t.Error(`"alice" read as a group`)
	}
}

func TestAllowBad(t *testing.T) {
	for _, v := range []string{`""`, `"@"`, `"-rf"`, `"a/b"`, `"../etc"`, `"al ice"`, `"@@x"`, `"` + strings.Repeat("a", 33) + `"`} {
		_, err := Parse("kvmnet.toml", []byte("[network.lab]\nmode = \"isolated\"\nallow = ["+v+"]\n"))
		if err == nil {
			t.Errorf("allow = [%s]: no error", v)
			continue
		}
		if !strings.Contains(err.Error(), "kvmnet.toml:3") {
			t.Errorf("allow = [%s]: %v: want the line", v, err)
		}
	}
}
