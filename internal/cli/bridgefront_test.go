package cli

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/warm"
)

// The bridge helper's front (package warm) takes a run only when it is sure
// the engine would take it the same way: these hold it to the engine's
// parsing and lookups.

// TestBridgeACL: the cache the engine writes for the front names, for every
// --br, the network bridgeNetwork names, with its allow list; a network
// called like another's bridge wins, as in the engine.
func TestBridgeACL(t *testing.T) {
	conf := testConf + `
[network.br7]
mode = "isolated"
bridge = "kvx7"
[network.other]
mode = "isolated"
bridge = "br7"
allow = ["carol"]
`
	f, err := config.Parse("kvmnet.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	acl, ok := bridgeACL(f, "v1 /etc/kvmnet/kvmnet.toml 1:2:3:4.5:6.7")
	if !ok {
		t.Fatal("no cache")
	}
	back, err := warm.ParseBridgeACL(acl.Marshal())
	if err != nil || back.Key != acl.Key {
		t.Fatalf("cache does not read back: %v\n%s", err, acl.Marshal())
	}
	names := []string{"default", "br0", "br7", "kvx7", "other", "eth0", "lab", "kvlab0", "x"}
	for name := range f.Networks {
		names = append(names, name, string(f.Networks[name].Bridge))
	}
	for _, br := range names {
		want, werr := bridgeNetwork(f, br)
		got, ok := back.Network(br)
		switch {
		case werr != nil && ok:
			t.Errorf("--br=%s: the engine refuses it (%v), the cache names %s", br, werr, got.Name)
		case werr == nil && !ok:
			t.Errorf("--br=%s: the engine takes network %s, the cache names none", br, want.Name)
		case werr == nil && got.Name != want.Name:
			t.Errorf("--br=%s: the engine takes network %s, the cache %s", br, want.Name, got.Name)
		case werr == nil:
			var allow []string
			for _, a := range want.Allow {
				allow = append(allow, string(a))
			}
			if !slices.Equal(got.Allow, allow) {
				t.Errorf("--br=%s: allow %q in the cache, %q in the engine", br, got.Allow, allow)
			}
		}
	}
}

// FuzzBridgeFrontInput feeds the front's hostile inputs, its arguments and
// environment, through what it does with them: the environment goes, and
// runtime settings in it send the run to the engine; arguments the front
// takes, the engine takes too, with the same meaning (the front is never
// more lenient than the engine, whose checks it skips).
func FuzzBridgeFrontInput(f *testing.F) {
	f.Add("--use-vnet\x00--fd=5\x00--br=default", "KVMNET_CONFIG=/tmp/x\x00PATH=/tmp\x00GODEBUG=x=1")
	f.Add("--br=br0\x00--fd=3", "GOGC=1")
	f.Add("--br=kvlab0\x00--fd=7\x00--use-vnet", "LD_PRELOAD=/tmp/x.so\x00GOMAXPROCS=1")
	f.Add("--br=../x\x00--fd=-1", "=\x00A")
	f.Add("--fd=3\x00--br=a:b", "GOMEMLIMIT=1\x00GOTRACEBACK=crash")
	f.Fuzz(func(t *testing.T, argBlob, envBlob string) {
		runtimeSet := false
		for _, kv := range strings.Split(envBlob, "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "" && os.Setenv(k, v) == nil {
				runtimeSet = runtimeSet || slices.Contains([]string{"GODEBUG", "GOGC", "GOMEMLIMIT", "GOMAXPROCS"}, k)
			}
		}
		if got := warm.ScrubEnv(); got != runtimeSet {
			t.Fatalf("env %q: runtime settings %v, want %v", envBlob, got, runtimeSet)
		}
		if env := os.Environ(); len(env) != 0 {
			t.Fatalf("environment after scrubbing: %q", env)
		}
		args := append([]string{bridgeHelperName}, strings.Split(argBlob, "\x00")...)
		front, ok := warm.ParseBridgeArgs(args)
		if !ok {
			return
		}
		engine, err := parseBridgeArgs(args)
		if err != nil {
			t.Fatalf("%q: the front takes it as %+v, the engine refuses it: %v", args, front, err)
		}
		if front.Vnet != engine.vnet || front.Br != engine.br || front.FD != engine.fd {
			t.Fatalf("%q: the front reads %+v, the engine %+v", args, front, engine)
		}
	})
}
