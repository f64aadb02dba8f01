package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/config"
)

func TestParseBridgeArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bridgeArgs
		err  string
	}{
		{args: []string{"h", "--use-vnet", "--fd=5", "--br=default"}, want: bridgeArgs{vnet: true, br: "default", fd: 5}},
		{args: []string{"h", "--br=br0", "--fd=12"}, want: bridgeArgs{br: "br0", fd: 12}},
		{args: []string{"h", "--fd=5"}, err: "no --br"},
		{args: []string{"h", "--br=default"}, err: "no --fd"},
		{args: []string{"h"}, err: "no --br"},
		{args: []string{"h", "--br=a", "--br=b", "--fd=5"}, err: "given twice"},
		{args: []string{"h", "--use-vnet", "--use-vnet", "--br=a"}, err: "given twice"},
		{args: []string{"h", "--br=a", "--fd=5", "--x"}, err: "unknown argument"},
		{args: []string{"h", "--use-vnet=1", "--br=a", "--fd=5"}, err: "unknown argument"},
		{args: []string{"h", "--br", "--fd=5"}, err: "unknown argument"},
		{args: []string{"h", "--br=../../etc/passwd", "--fd=5"}, err: "--br:"},
		{args: []string{"h", "--br=", "--fd=5"}, err: "--br:"},
		{args: []string{"h", "--br=waytoolongforaname", "--fd=5"}, err: "--br:"},
		{args: []string{"h", "--br=a", "--fd=2"}, err: "above 2"},
		{args: []string{"h", "--br=a", "--fd=-1"}, err: "above 2"},
		{args: []string{"h", "--br=a", "--fd=+5"}, err: "above 2"},
		{args: []string{"h", "--br=a", "--fd=05"}, err: "above 2"},
		{args: []string{"h", "--br=a", "--fd=99999999999999999999"}, err: "above 2"},
		{args: []string{"h", "--br=a", "--fd=5", "--use-vnet", "x"}, err: "got 4 arguments"},
	} {
		got, err := parseBridgeArgs(tc.args)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%q: got %+v, want %+v", tc.args, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errUsage)):
			t.Errorf("%q: error %v, want a usage error with %q", tc.args, err, tc.err)
		}
	}
}

// fakeAccounts is /etc/passwd and /etc/group for permitted.
type fakeAccounts struct{ users, groups map[string]int }

func (f fakeAccounts) userID(n string) (int, bool)  { id, ok := f.users[n]; return id, ok }
func (f fakeAccounts) groupID(n string) (int, bool) { id, ok := f.groups[n]; return id, ok }

var testAccounts = fakeAccounts{
	users:  map[string]int{"alice": 1000, "bob": 1001},
	groups: map[string]int{"kvm": 107, "lab": 500},
}

const testConf = `
[network.lab]
bridge = "kvlab0"
mode = "isolated"
allow = ["@lab", "bob"]
[network.dmz]
mode = "isolated"
`

func TestPermitted(t *testing.T) {
	f, err := config.Parse("kvmnet.toml", []byte(testConf))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		br  string
		who caller
		ok  bool
	}{
		{"default", caller{uid: 1000, gid: 1000, groups: []int{107}}, true}, // group kvm
		{"br0", caller{uid: 1000, gid: 1000, groups: []int{107}}, true},     // by its bridge
		{"default", caller{uid: 1000, gid: 107}, true},                      // kvm as primary group
		{"default", caller{uid: 1000, gid: 1000, groups: []int{500}}, false},
		{"default", caller{uid: 0, gid: 0}, true}, // root always
		{"lab", caller{uid: 1000, gid: 1000, groups: []int{107}}, false},
		{"lab", caller{uid: 1000, gid: 1000, groups: []int{500}}, true},
		{"kvlab0", caller{uid: 1001, gid: 1001}, true}, // bob by name
		{"dmz", caller{uid: 1000, gid: 1000, groups: []int{107, 500}}, false},
		{"dmz", caller{uid: 0}, true},
	} {
		n, err := bridgeNetwork(f, tc.br)
		if err != nil {
			t.Fatal(err)
		}
		err = permitted(n, tc.who, testAccounts)
		if tc.ok != (err == nil) {
			t.Errorf("%s for %+v: %v, want allowed %v", tc.br, tc.who, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, errNotAllowed) || !strings.Contains(err.Error(), "network "+n.Name+":") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("%s: refusal %q: want one line naming the network and why", tc.br, err)
		}
	}
	if _, err := bridgeNetwork(f, "eth0"); err == nil || !errors.Is(err, errUsage) {
		t.Errorf("--br=eth0, no network's: %v", err)
	}
}

// The configuration is read only where root alone could have written it.
func TestLoadRootConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the file must be root's")
	}
	dir, err := os.MkdirTemp("/run", "kvmnet-conftest-") // /tmp is world-writable: refused
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kvmnet.toml")
	if f, err := loadRootConfig(path); err != nil || len(f.Networks) != 0 {
		t.Fatalf("no file: %v, %v; want the built-in configuration", f, err)
	}
	if err := os.WriteFile(path, []byte(testConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := loadRootConfig(path); err != nil || f.Networks["lab"] == nil {
		t.Fatalf("root's file: %v", err)
	}
	refused := func(what string) {
		t.Helper()
		if _, err := loadRootConfig(path); !errors.Is(err, errNotRootOnly) {
			t.Errorf("%s: %v, want refused", what, err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(path, 0o666))
	refused("world-writable file")
	must(os.Chmod(path, 0o644))
	must(os.Chown(path, 1000, 0))
	refused("file of uid 1000")
	must(os.Chown(path, 0, 0))
	must(os.Chmod(dir, 0o775))
	refused("group-writable directory")
	must(os.Chmod(dir, 0o755))
	must(os.Rename(path, path+".real"))
	must(os.Symlink(path+".real", path))
	if _, err := loadRootConfig(path); err == nil {
		t.Error("symbolic link: read")
	}
	must(os.Remove(path))
	must(os.Mkdir(path, 0o755))
	refused("directory in place of the file")
	if _, err := loadRootConfig("/tmp/kvmnet-conftest-nonexistent/kvmnet.toml"); !errors.Is(err, errNotRootOnly) {
		t.Errorf("under /tmp: %v, want refused", err)
	}
}

// FuzzBridgeHelperInput feeds the helper's hostile inputs, its arguments and
// environment, through what it does with them before it changes anything:
// the environment is scrubbed whatever it held, and the arguments either are
// refused with a one-line usage error or name a network the file defines,
// which the allow list then rules on.
func FuzzBridgeHelperInput(f *testing.F) {
	f.Add("--use-vnet\x00--fd=5\x00--br=default", "KVMNET_CONFIG=/tmp/x\x00PATH=/tmp\x00GODEBUG=x=1")
	f.Add("--br=br0\x00--fd=3", "")
	f.Add("--br=kvlab0\x00--fd=7\x00--use-vnet", "LD_PRELOAD=/tmp/x.so")
	f.Add("--br=../x\x00--fd=-1", "=\x00A")
	conf, err := config.Parse("kvmnet.toml", []byte(testConf))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, argBlob, envBlob string) {
		for _, kv := range strings.Split(envBlob, "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
				_ = os.Setenv(k, v)
			}
		}
		scrubEnv()
		if env := os.Environ(); !slices.Equal(env, []string{"PATH=" + safePath}) {
			t.Fatalf("environment after scrubbing: %q", env)
		}
		args := append([]string{bridgeHelperName}, strings.Split(argBlob, "\x00")...)
		a, err := parseBridgeArgs(args)
		if err != nil {
			if !errors.Is(err, errUsage) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%q: %q: want a one-line usage error", args, err)
			}
			return
		}
		if a.fd < 3 || config.CheckIfName(a.br) != nil {
			t.Fatalf("%q accepted as %+v", args, a)
		}
		n, err := bridgeNetwork(conf, a.br)
		if err != nil {
			return
		}
		if _, defined := conf.Networks[n.Name]; !defined && n.Name != config.DefaultNetwork {
			t.Fatalf("--br=%s gave network %s, which the file does not define", a.br, n.Name)
		}
		if err := permitted(n, caller{uid: 4242, gid: 4242}, testAccounts); err == nil {
			t.Fatalf("--br=%s: a user in no group allowed on %s", a.br, n.Name)
		}
	})
}
