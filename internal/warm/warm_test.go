package warm

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/version"
)

// TestSameAsEngine: what the front knows of the engine without linking it
// is what the engine says.
func TestSameAsEngine(t *testing.T) {
	for _, c := range []struct{ front, engine string }{
		{configPath, config.DefaultPath}, {configEnv, config.EnvPath}, {defaultNetwork, config.DefaultNetwork},
		{stateRoot, state.Root}, {daemonName, ctl.ProcName}, {watchFlag, ctl.WatchFlag},
		{NatUp.Mode, string(config.NAT)}, {IfUp.Mode, string(config.Isolated)},
	} {
		if c.front != c.engine {
			t.Errorf("front has %q, engine %q", c.front, c.engine)
		}
	}
	path := filepath.Join(t.TempDir(), "kvmnet.toml")
	t.Setenv(configEnv, path)
	for _, write := range []bool{false, true} {
		if write {
			if err := os.WriteFile(path, []byte("[network.lab]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		stamp, err := config.Stamp(config.Path())
		if err != nil {
			t.Fatal(err)
		}
		// cli's resolveForHelper keys the cached resolution so.
		want := version.Version + " " + stamp + " " + string(config.NAT)
		if got, err := source(NatUp, path); err != nil || got != want {
			t.Errorf("source = %q, %v; want %q", got, err, want)
		}
	}
}

func TestHotRoundTrip(t *testing.T) {
	h := &Hot{
		Key: "v1 /etc/kvmnet/kvmnet.toml 1:2:3:4.5:6.7 nat", Network: "lab", Bridge: "br1", Index: 7, Mode: "nat",
		AnyPorts: true, Pinned: true,
		Addresses: []Address{{Text: "10.0.0.1/24", IP: []byte{10, 0, 0, 1}, Bits: 24}},
		Sysctls:   []Sysctl{{Path: "/proc/sys/net/ipv4/ip_forward", Value: "1"}},
		DaemonPID: 42, DaemonConf: "/run/kvmnet/netns-1/lab.netsvc.conf", NFTGen: 9, HasRules: true,
		Group: 2147483649, Isolate: true, WatcherPID: 43,
	}
	got, err := Parse(h.Marshal())
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Errorf("Parse(Marshal) = %+v, %v; want %+v", got, err, h)
	}
	for _, bad := range []string{
		"", "kvmnet-hot 2\nkey k\nnetwork n\nbridge b 1\nmode nat\n",
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\n", // no mode
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\nsomething new\n",
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b x\nmode nat\n",
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\nsysctl /etc/passwd 1\n",
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\naddress 10.0.0.1/24 0a0000zz 24\n", // not hex
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\naddress 10.0.0.1/24 0a000001 33\n", // prefix too long
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\naddress 10.0.0.1/24 0a0000 24\n",   // 3 bytes
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat",                                    // cut short
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\ngroup 0\n",                         // no group is no line
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\ngroup 4294967296\n",                // not 32 bits
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\nisolate no\n",
		"kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1\nmode nat\nwatcher 0\n", // no watcher is no line
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		}
	}
}

func TestEngineArgv0(t *testing.T) {
	for argv0, want := range map[string]string{
		"/usr/libexec/kvmnet-natup":     "kvmnet-natup",
		"/usr/libexec/kvmnet-natup@lab": "kvmnet-natup@lab",
		"/etc/qemu-ifup":                "kvmnet-natup",
		"/tmp/a@b/kvmnet-natup":         "kvmnet-natup",
		"kvmnet-natup@x@lab":            "kvmnet-natup@lab",
		"":                              "kvmnet-natup",
	} {
		if got := engineArgv0(NatUp, argv0); got != want {
			t.Errorf("engineArgv0(%q) = %q, want %q", argv0, got, want)
		}
		name, _ := atNetwork(argv0)
		if engine := config.FromProgram(argv0); name != engine {
			t.Errorf("atNetwork(%q) = %q, config.FromProgram %q", argv0, name, engine)
		}
	}
}

// TestStamp: the system log's time stamp is time.Stamp's.
func TestStamp(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, time.December, 1, 18, 5, 9, 0, time.UTC),
		time.Date(2027, time.January, 31, 0, 0, 0, 999, time.UTC),
		time.Date(2028, time.May, 9, 23, 59, 59, 0, time.UTC),
	} {
		if got, want := string(appendStamp(nil, tm)), tm.Format(time.Stamp); got != want {
			t.Errorf("appendStamp(%v) = %q, want %q", tm, got, want)
		}
	}
}

// TestFields: fields splits as strings.Fields does.
func TestFields(t *testing.T) {
	for _, v := range []string{"", " ", "a", " a  b ", "a\tb\nc", "a b c d", "a\u00a0b c", "\u2003a", "x\u0085y z"} {
		var f [3]string
		n := fields(v, &f)
		want := strings.Fields(v)
		if n != min(len(want), 4) || !slices.Equal(f[:min(n, 3)], want[:min(len(want), 3)]) {
			t.Errorf("fields(%q) = %d %q, want %q", v, n, f, want)
		}
	}
	for _, bad := range []string{"kvmnet-hot 1\n", "kvmnet-hot 1\nkey k\nnetwork n\nbridge b 1 2\nmode nat\n", "kvmnet-hot 1\n\nkey k\nnetwork n\nbridge b 1\nmode nat\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		}
	}
}

// TestStartEnv: the front reads $KVMNET_CONFIG from the environment the
// process began with, as os.Getenv reads it: the first definition, the
// whole value (an "=" in it too), no entry without "=", no prefix match.
func TestStartEnv(t *testing.T) {
	environ := []byte("KVMNET_CONFIGX=no\x00KVMNET_CONFIG\x00A=1\x00KVMNET_CONFIG=/etc/a=b.toml\x00KVMNET_CONFIG=/second\x00EMPTY=\x00LAST=end")
	for name, want := range map[string]string{
		"KVMNET_CONFIG": "/etc/a=b.toml", "A": "1", "EMPTY": "", "LAST": "end", "MISSING": "", "KVMNET": "",
	} {
		if got := lookupEnv(environ, name); got != want {
			t.Errorf("lookupEnv(%s) = %q, want %q", name, got, want)
		}
	}
	// This process's own, which no test has changed: as os.Getenv has it.
	for _, name := range []string{"PATH", "HOME", "NO_SUCH_VARIABLE_HERE"} {
		if got, want := startEnv(name, newBuf()), os.Getenv(name); got != want {
			t.Errorf("startEnv(%s) = %q, os.Getenv %q", name, got, want)
		}
	}
}

// TestFollowedGen: the front reads the generation file as ctl.WriteGen
// writes it, and anything else, or none, as no generation (0, which the
// kernel never has).
func TestFollowedGen(t *testing.T) {
	dir := t.TempDir()
	r := &run{dir: dir, hot: &Hot{Network: "lab"}, buf: make([]byte, 64)}
	if g := r.followedGen(); g != 0 {
		t.Errorf("no file: %d, want 0", g)
	}
	path := filepath.Join(dir, "lab"+GenExt)
	if err := ctl.WriteGen(path, 4294967295); err != nil {
		t.Fatal(err)
	}
	if g := r.followedGen(); g != 4294967295 {
		t.Errorf("written 4294967295, read %d", g)
	}
	if g, err := ctl.ReadGen(path); err != nil || g != 4294967295 {
		t.Errorf("ctl.ReadGen = %d, %v", g, err)
	}
	for _, bad := range []string{"", "12", "12\n\n", "-1\n", "4294967296\n", " 12\n", "0x10\n"} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if g := r.followedGen(); g != 0 {
			t.Errorf("file %q: %d, want 0", bad, g)
		}
	}
}
