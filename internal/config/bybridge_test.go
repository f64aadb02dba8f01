package config

import "testing"

func TestNetworkOnBridge(t *testing.T) {
	none := &File{}
	lab, err := Parse("kvmnet.toml", []byte("[network.lab]\nbridge = \"kvlab0\"\nmode = \"isolated\"\n[network.dmz]\nmode = \"isolated\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	moved, err := Parse("kvmnet.toml", []byte("[network.default]\nbridge = \"kvnat0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f      *File
		bridge string
		want   string
	}{
		{none, "br0", "default"}, // no file at all: the built-in default
		{none, "virbr0", ""},
		{lab, "kvlab0", "lab"},
		{lab, "dmz", "dmz"}, // a network's bridge is named after it by default
		{lab, "br0", "default"},
		{moved, "kvnat0", "default"},
		{moved, "br0", ""}, // the default network moved off br0
	} {
		got, ok := tc.f.NetworkOnBridge(tc.bridge)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("NetworkOnBridge(%q) = %q, %v; want %q", tc.bridge, got, ok, tc.want)
		}
	}
}
