package operator

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// installed copies the binaries into root as `make install` lays them out:
// ROOT/usr/bin/kvmnet and ROOT/usr/libexec/kvmnet-*.
func installed(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	for name := range map[string]bool{"kvmnet": true, "kvmnet-ifup": true, "kvmnet-ifdown": true, "kvmnet-natup": true, "kvmnet-natdown": true, "kvmnet-netsvc": true} {
		dir := "usr/libexec"
		if name == "kvmnet" {
			dir = "usr/bin"
		}
		b, err := os.ReadFile(filepath.Join(bin, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// atLinks lists the @NETWORK entries of dir.
func atLinks(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), "@") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestLink: `kvmnet link` makes the @NETWORK links of the configured networks
// beside the installed helpers, and they work; it changes nothing when a
// name is taken, and --prune removes only its own links of networks gone
// from the file.
func TestLink(t *testing.T) {
	h := newHost(t, `
[network.lab]
bridge = "kvlab0"
mode = "hostonly"
address = "10.77.0.1/24"
dhcp = false
dns = false
[network.dmz]
mode = "isolated"
`)
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	root := installed(t)
	kvmnet, libexec := filepath.Join(root, "usr/bin/kvmnet"), filepath.Join(root, "usr/libexec")
	link := func(args ...string) (string, int) {
		_, stderr, err := h.Run(append([]string{"env", "KVMNET_CONFIG=" + h.Config, kvmnet, "link"}, args...)...)
		return stderr, exitCode(t, err)
	}
	if e, code := link(); code != 0 {
		t.Fatalf("kvmnet link: exit %d: %s", code, e)
	}
	want := []string{}
	for _, n := range []string{"dmz", "lab"} {
		for _, p := range []string{"kvmnet-ifdown", "kvmnet-ifup", "kvmnet-natdown", "kvmnet-natup"} {
			want = append(want, p+"@"+n)
		}
	}
	slices.Sort(want)
	if got := atLinks(t, libexec); !slices.Equal(got, want) {
		t.Fatalf("after kvmnet link: %v, want %v", got, want)
	}
	if target, _ := os.Readlink(filepath.Join(libexec, "kvmnet-natup@lab")); target != "kvmnet-natup" {
		t.Errorf("kvmnet-natup@lab -> %q, want kvmnet-natup", target)
	}
	if e, code := link(); code != 0 || e != "" {
		t.Errorf("a second kvmnet link: exit %d, %q; want 0 and nothing to say", code, e)
	}

	h.taps("vnet0")
	for _, prog := range []string{"kvmnet-ifup@lab", "kvmnet-ifdown@lab"} {
		if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(libexec, prog), "vnet0"); err != nil {
			t.Fatalf("%s made by kvmnet link: %v\n%s", prog, err, e)
		}
		if prog == "kvmnet-ifup@lab" && h.Master("vnet0") != "kvlab0" {
			t.Fatalf("kvmnet-ifup@lab put vnet0 on %q, want kvlab0", h.Master("vnet0"))
		}
	}
	h.MustRun("ip", "link", "del", "vnet0")

	// A name taken by something else: an error, and nothing made.
	if err := os.WriteFile(h.Config, []byte(strings.ReplaceAll(mustRead(t, h.Config), "[network.dmz]", "[network.web]\nmode = \"isolated\"\n[network.dmz]")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(libexec, "kvmnet-natup@web"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if e, code := link("web"); code != 1 || !strings.Contains(e, "kvmnet-natup@web: taken") {
		t.Errorf("kvmnet link web over a file: exit %d, %s", code, e)
	}
	if _, err := os.Lstat(filepath.Join(libexec, "kvmnet-ifup@web")); err == nil {
		t.Error("a refused kvmnet link made some links")
	}
	os.Remove(filepath.Join(libexec, "kvmnet-natup@web"))
	for _, args := range [][]string{{"nosuch"}, {"Bad/Name"}, {"--bogus"}} {
		if e, code := link(args...); code != 2 {
			t.Errorf("kvmnet link %s: exit %d, want 2: %s", args, code, e)
		}
	}

	// dmz leaves the file: --prune removes its links, not a foreign one.
	if err := os.WriteFile(h.Config, []byte("[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/true", filepath.Join(libexec, "kvmnet-natup@other")); err != nil {
		t.Fatal(err)
	}
	if e, code := link("--prune"); code != 0 {
		t.Fatalf("kvmnet link --prune: exit %d: %s", code, e)
	}
	want = []string{"kvmnet-ifdown@lab", "kvmnet-ifup@lab", "kvmnet-natdown@lab", "kvmnet-natup@lab", "kvmnet-natup@other"}
	if got := atLinks(t, libexec); !slices.Equal(got, want) {
		t.Errorf("after kvmnet link --prune: %v, want %v", got, want)
	}
	h.AssertClean(rules, fwd)
}

// TestDownAll: `kvmnet down --all` (the package's prerm) changes nothing
// while a VM uses any network, names them, then tears every network down.
// The DHCP/DNS daemon is kvmnet-netsvc in ps -e, as the README says.
func TestDownAll(t *testing.T) {
	h := newHost(t, "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	if _, e, code := h.kvmnet(nil, "down", "--all"); code != 0 || e != "" {
		t.Fatalf("down --all with nothing up: exit %d, %s", code, e)
	}
	h.must("up", "default")
	h.must("up", "lab")
	pid := h.status("default").Networks[0].Services.PID
	if comm := strings.TrimSpace(mustRead(t, "/proc/"+itoa(pid)+"/comm")); comm != "kvmnet-netsvc" {
		t.Errorf("the daemon is %q in ps -e, want kvmnet-netsvc", comm)
	}
	h.taps("vnet0")
	h.helper("kvmnet-ifup@lab", "vnet0")
	_, e, code := h.kvmnet(nil, "down", "--all")
	if code != 1 || !strings.Contains(e, "networks in use: lab by vnet0") {
		t.Fatalf("down --all with a VM on lab: exit %d, %s", code, e)
	}
	if !h.Exists("br0") || !h.Exists("kvlab0") || h.Master("vnet0") != "kvlab0" {
		t.Fatal("a refused down --all changed something")
	}
	for _, args := range [][]string{{"down"}, {"down", "lab", "--all"}} {
		if _, e, code := h.kvmnet(nil, args...); code != 2 {
			t.Errorf("kvmnet %s: exit %d, want 2: %s", strings.Join(args, " "), code, e)
		}
	}
	h.helper("kvmnet-ifdown@lab", "vnet0")
	if _, e, code := h.kvmnet(nil, "down", "--all"); code != 0 {
		t.Fatalf("down --all: exit %d, %s", code, e)
	}
	h.MustRun("ip", "link", "del", "vnet0")
	h.AssertClean(rules, fwd)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
