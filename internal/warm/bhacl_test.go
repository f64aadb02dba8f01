package warm

import (
	"slices"
	"strconv"
	"testing"
)

func TestBridgeACLRoundTrip(t *testing.T) {
	a := &BridgeACL{Key: "v1 /etc/kvmnet/kvmnet.toml 2049:77:120:1.2:3.4", Networks: []ACLNetwork{
		{Name: "br7", ByBridge: "kvx7"},
		{Name: "default", ByBridge: "br0", Allow: []string{"@kvm"}},
		{Name: "lab", ByBridge: "", Allow: []string{"@lab", "bob"}},
	}}
	b, err := ParseBridgeACL(a.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if b.Key != a.Key || len(b.Networks) != 3 || !slices.Equal(b.Networks[2].Allow, a.Networks[2].Allow) || b.Networks[2].ByBridge != "" {
		t.Errorf("read back %+v from\n%s", b, a.Marshal())
	}
	for br, want := range map[string]string{"br7": "br7", "kvx7": "br7", "br0": "default", "default": "default", "lab": "lab", "x": ""} {
		if n, _ := b.Network(br); n.Name != want {
			t.Errorf("--br=%s: network %q, want %q", br, n.Name, want)
		}
	}
	for _, bad := range []string{
		"",
		"kvmnet-bridge-helper-acl 2\nkey x\n",
		"kvmnet-bridge-helper-acl 1\nkey x",
		"kvmnet-bridge-helper-acl 1\nkey \n",
		"kvmnet-bridge-helper-acl 1\nkey x\nnet a\n",
		"kvmnet-bridge-helper-acl 1\nkey x\nnet a/b br0\n",
		"kvmnet-bridge-helper-acl 1\nkey x\nnet a br0 @\n",
		"kvmnet-bridge-helper-acl 1\nkey x\nnet a br0 al:ice\n",
		"kvmnet-bridge-helper-acl 1\nkey x\nnet a br0  bob\n",
		"kvmnet-bridge-helper-acl 1\nkey x\nhost a br0\n",
	} {
		if _, err := ParseBridgeACL([]byte(bad)); err == nil {
			t.Errorf("%q read as a cache", bad)
		}
	}
}

// TestColonLookup holds the accounts reader to os/user's rules for
// /etc/passwd and /etc/group (lookup_unix.go), which the engine uses.
func TestColonLookup(t *testing.T) {
	passwd := []byte(`# comment alice:x:1:1::/:/bin/sh
root:x:0:0:root:/root:/bin/bash
  bob:x:1001:1001::/home/bob:/bin/sh
+carol:x:1002:1002::/:/bin/sh
-dave:x:1003:1003::/:/bin/sh
erin:x:12a:1004::/:/bin/sh
frank:x:1005:zz::/:/bin/sh
gina:x:1006:1006::/
hank:x:1007:1007::/:/bin/sh
hank:x:1008:1008::/:/bin/sh
:x:1009:1009::/:/bin/sh
ivan:x:1010:1010::/:/bin/sh` + "\r\n")
	for _, tc := range []struct {
		name string
		idx  int
		want string // the name found, "" none
	}{
		{"root", 0, "root"}, {"bob", 0, "bob"}, {"alice", 0, ""}, {"carol", 0, ""}, {"+carol", 0, ""},
		{"dave", 0, ""}, {"erin", 0, ""}, {"frank", 0, ""}, {"gina", 0, ""}, {"hank", 0, "hank"},
		{"ivan", 0, "ivan"}, {"", 0, ""}, {"1001", 2, "bob"}, {"1008", 2, "hank"}, {"1009", 2, ""}, {"0", 2, "root"},
	} {
		f, ok := colonLookup(passwd, tc.name, tc.idx, 6)
		if got := ""; ok {
			got = f[0]
			if got != tc.want {
				t.Errorf("passwd field %d = %q: found %q, want %q", tc.idx, tc.name, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("passwd field %d = %q: not found, want %q", tc.idx, tc.name, tc.want)
		}
	}
	if f, ok := colonLookup(passwd, "hank", 0, 6); !ok || f[2] != "1007" {
		t.Errorf("hank: %q, want the first entry's uid 1007", f)
	}
	group := []byte("kvm:x:107:\nlab:x:5x0:\n lab:x:500:bob\nshort:x:9\n")
	for name, want := range map[string]string{"kvm": "107", "lab": "500", "short": ""} {
		f, ok := colonLookup(group, name, 0, 3)
		if got := ""; ok {
			got = f[2]
			if got != want {
				t.Errorf("group %s: gid %q, want %q", name, got, want)
			}
		} else if want != "" {
			t.Errorf("group %s: not found, want gid %s", name, want)
		}
	}
}

// TestAllowed: the front's yes is the engine's permitted's; anything else it
// leaves to the engine.
func TestAllowed(t *testing.T) {
	acc := &accountFiles{read: 3,
		passwd: []byte("alice:x:1000:1000::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n"),
		group:  []byte("kvm:x:107:\nlab:x:500:\n")}
	for _, tc := range []struct {
		who   caller
		allow []string
		want  bool
	}{
		{caller{uid: 0}, nil, true},
		{caller{uid: 1000, gid: 1000}, []string{"@kvm"}, false},
		{caller{uid: 1000, gid: 1000, groups: []int{107}}, []string{"@kvm"}, true},
		{caller{uid: 1000, gid: 107}, []string{"@kvm"}, true},
		{caller{uid: 1000, gid: 1000}, []string{"@lab", "alice"}, true},
		{caller{uid: 1001, gid: 1001}, []string{"@lab", "alice"}, false},
		{caller{uid: 1001, gid: 1001}, []string{"@nosuch", "nosuch"}, false},
		{caller{uid: 1001, gid: 1001}, []string{}, false},
	} {
		if got := tc.who.allowed(tc.allow, acc); got != tc.want {
			t.Errorf("%+v on %q: %v, want %v", tc.who, tc.allow, got, tc.want)
		}
	}
	if got := (caller{uid: 1001}).String(acc); got != "bob (uid 1001)" {
		t.Errorf("uid 1001 logged as %q", got)
	}
	if got := (caller{uid: 4242}).String(acc); got != "uid 4242" {
		t.Errorf("uid 4242 logged as %q", got)
	}
}

func TestParseBridgeArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want BridgeArgs
		ok   bool
	}{
		{[]string{"h", "--use-vnet", "--fd=5", "--br=default"}, BridgeArgs{Vnet: true, Br: "default", FD: 5}, true},
		{[]string{"h", "--br=br0", "--fd=12"}, BridgeArgs{Br: "br0", FD: 12}, true},
		{[]string{"h", "--br=br0"}, BridgeArgs{}, false},
		{[]string{"h", "--br=br0", "--fd=3", "--fd=3"}, BridgeArgs{}, false},
		{[]string{"h", "--use-vnet", "--use-vnet", "--br=br0", "--fd=3"}, BridgeArgs{}, false},
		{[]string{"h", "--use-vnet", "--use-vnet", "--br=br0"}, BridgeArgs{}, false},
		{[]string{"h", "--br=a", "--fd=05"}, BridgeArgs{}, false},
		{[]string{"h", "--br=a", "--fd=2"}, BridgeArgs{}, false},
		{[]string{"h", "--br=-a", "--fd=3"}, BridgeArgs{}, false},
		{[]string{"h", "--help"}, BridgeArgs{}, false},
	} {
		got, ok := ParseBridgeArgs(tc.args)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("%q: %+v %v, want %+v %v", tc.args, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkColonLookup: a user's run looks a group up in an /etc/group of
// 60 lines, as the bridge helper's allow list makes it.
func BenchmarkColonLookup(b *testing.B) {
	var group []byte
	for i := range 60 {
		group = append(group, "group"+strconv.Itoa(i)+":x:"+strconv.Itoa(100+i)+":alice,bob\n"...)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := colonLookup(group, "group59", 0, 3); !ok {
			b.Fatal("group59 not found")
		}
	}
}
