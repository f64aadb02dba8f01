package operator

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeb builds the package with `make deb`, unpacks it into a scratch root
// (never onto this machine) and runs what it installed: kvmnet --version, the
// example configuration, and kvmnet-natup for a tap in a namespace.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the .deb (nfpm from the module proxy): skipped with -short")
	}
	for _, tool := range []string{"make", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	// The tree's own version, as `make deb` would take it from git describe.
	version := strings.TrimSpace(run(t, "git", "-C", "../..", "describe", "--tags", "--always", "--dirty"))
	debVersion := strings.TrimSpace(run(t, "../../packaging/debversion.sh", version))
	dist := t.TempDir()
	run(t, "make", "-s", "-C", "../..", "deb", "VERSION="+version, "DISTDIR="+dist, "BUILDDIR="+filepath.Join(dist, "bin"))
	deb := filepath.Join(dist, "kvmnet_"+debVersion+"_amd64.deb")

	for field, want := range map[string]string{
		"Package": "kvmnet", "Version": debVersion, "Architecture": "amd64", "Recommends": "iptables", "Depends": "",
	} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	for path, mode := range map[string]os.FileMode{
		"usr/bin/kvmnet": 0o755, "usr/libexec/kvmnet-ifup": 0o755, "usr/libexec/kvmnet-ifdown": 0o755,
		"usr/libexec/kvmnet-natup": 0o755, "usr/libexec/kvmnet-natdown": 0o755, "usr/libexec/kvmnet-netsvc": 0o755,
		"usr/libexec/kvmnet-libvirt-hook": 0o755, "usr/share/man/man8/kvmnet-libvirt-hook.8.gz": 0o644,
		"etc/kvmnet/kvmnet.toml.example": 0o644, "lib/systemd/system/kvmnet-up@.service": 0o644,
		"usr/share/man/man1/kvmnet.1.gz": 0o644, "usr/share/man/man8/kvmnet-natup.8.gz": 0o644,
		"usr/share/doc/kvmnet/README.md": 0o644, "usr/share/doc/kvmnet/docs/security.md": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("/%s: %v, mode %v, want %v", path, err, fi, mode)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "usr/libexec/kvmnet-bridge-helper")); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("/usr/libexec/kvmnet-bridge-helper: %v, %v; want setuid root, 0755", err, fi)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/share/man/man8/kvmnet-bridge-helper.8.gz")); err != nil {
		t.Errorf("no man page of the bridge helper: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/libvirt/hooks/qemu.d/kvmnet")); l != "/usr/libexec/kvmnet-libvirt-hook" {
		t.Errorf("/etc/libvirt/hooks/qemu.d/kvmnet -> %q (%v), want the libvirt hook", l, err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kvmnet/kvmnet.toml")); err == nil {
		t.Error("the package installs the live configuration; the defaults would not apply")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd")); err == nil {
		t.Error("the package enables a unit")
	}
	unit, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system/kvmnet-up@.service"))
	for _, want := range []string{"ExecStart=/usr/bin/kvmnet up %i", "ExecStop=/usr/bin/kvmnet down %i"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if man := run(t, "zcat", filepath.Join(root, "usr/share/man/man1/kvmnet.1.gz")); !strings.Contains(man, ".TH KVMNET 1") || !strings.Contains(man, "doctor [--fix]") {
		t.Errorf("kvmnet.1 is not the help as a man page:\n%s", man)
	}
	if v := run(t, filepath.Join(root, "usr/bin/kvmnet"), "--version"); v != "kvmnet "+version+"\n" {
		t.Errorf("installed kvmnet --version = %q", v)
	}

	h := newHost(t, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	example := filepath.Join(root, "etc/kvmnet/kvmnet.toml.example")
	if out, e, err := h.Run("env", "KVMNET_CONFIG="+example, filepath.Join(root, "usr/bin/kvmnet"), "status", "lab"); err != nil || !strings.Contains(out, "kvlab0") {
		t.Errorf("the example configuration does not load: %v\n%s%s", err, out, e)
	}
	h.taps("vnet0")
	for _, prog := range []string{"kvmnet-natup", "kvmnet-natdown"} {
		if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(root, "usr/libexec", prog), "vnet0"); err != nil {
			t.Fatalf("installed %s: %v\n%s", prog, err, e)
		}
		if want := map[string]string{"kvmnet-natup": "br0", "kvmnet-natdown": ""}[prog]; h.Master("vnet0") != want {
			t.Errorf("after the installed %s vnet0 is on %q, want %q", prog, h.Master("vnet0"), want)
		}
	}
	h.MustRun("ip", "link", "del", "vnet0")
	h.AssertClean(rules, fwd)
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s: %v\n%s%s", strings.Join(argv, " "), err, out, stderr)
	}
	return string(out)
}

// TestDebVersion: whatever git describe prints becomes a valid Debian
// version that sorts as the releases do.
func TestDebVersion(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed")
	}
	cases := []struct{ describe, want string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-4-gabc1234", "1.2.3+git4.abc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+git4.abc1234+dirty"},
		{"abc1234", "0.0.0~gitabc1234"},
		{"1234abc-dirty", "0.0.0~git1234abc+dirty"},
		{"dev", "0.0.0~gitdev"},
	}
	for _, c := range cases {
		got := strings.TrimSpace(run(t, "../../packaging/debversion.sh", c.describe))
		if got != c.want {
			t.Errorf("%s -> %s, want %s", c.describe, got, c.want)
		}
		run(t, "dpkg", "--validate-version", got)
	}
	// A tag sorts after every untagged build, and a later commit after its tag.
	run(t, "dpkg", "--compare-versions", "0.0.0~gitabc1234", "lt", "0.1.0")
	run(t, "dpkg", "--compare-versions", "1.2.3", "lt", "1.2.3+git4.abc1234")
}

// buildDeb builds the package at a given version (as git describe would print
// it) into a new directory and returns its path.
func buildDeb(t *testing.T, version string) string {
	t.Helper()
	dist := t.TempDir()
	run(t, "make", "-s", "-C", "../..", "deb", "VERSION="+version, "DISTDIR="+dist, "BUILDDIR="+filepath.Join(dist, "bin"))
	deb := strings.TrimSpace(run(t, "../../packaging/debversion.sh", version))
	return filepath.Join(dist, "kvmnet_"+deb+"_amd64.deb")
}

// dpkgRoot is a throwaway root for `dpkg --root`, which runs the maintainer
// scripts chrooted into it: busybox for their shell and tools, an empty dpkg
// database, and a configuration defining the network lab.
func dpkgRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"bin", "var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/kvmnet", "run/kvmnet", "proc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "cp", busybox(t), filepath.Join(root, "bin/busybox"))
	for _, c := range []string{"sh", "rm", "readlink", "ls", "cat", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", c)); err != nil {
			t.Fatal(err)
		}
	}
	for path, text := range map[string]string{"var/lib/dpkg/status": "", "etc/kvmnet/kvmnet.toml": "[network.lab]\nmode = \"isolated\"\n"} {
		if err := os.WriteFile(filepath.Join(root, path), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestDebLifecycle installs the package into a throwaway root with dpkg, as a
// Debian machine would (the maintainer scripts run, chrooted there), then
// upgrades it, tries to remove it while a VM uses a network, removes it and
// purges it. What the scripts do to networks they do in the test's
// namespace, whose state directory is bind-mounted into the root.
func TestDebLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two .debs (nfpm from the module proxy): skipped with -short")
	}
	for _, tool := range []string{"make", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	old, cur := buildDeb(t, "v0.9.0"), buildDeb(t, "v0.9.0-1-gabc1234")
	root := dpkgRoot(t)
	h := newHost(t, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	dpkg := func(args ...string) (string, error) {
		// ip netns exec gives the command a mount namespace of its own, so
		// the bind mounts go when it ends. A real root has /proc, which
		// kvmnet reads.
		script := `mount --bind /run/kvmnet "$0/run/kvmnet" && mount --bind /proc "$0/proc" && exec dpkg --root="$0" --force-depends "$@"`
		out, e, err := h.Run(append([]string{"sh", "-c", script, root}, args...)...)
		return out + e, err
	}
	mustDpkg := func(args ...string) {
		t.Helper()
		if out, err := dpkg(args...); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	at := func(p string) string { return filepath.Join(root, p) }
	exists := func(p string) bool { _, err := os.Lstat(at(p)); return err == nil }
	version := func() string { return run(t, at("usr/bin/kvmnet"), "--version") }

	mustDpkg("-i", old)
	if v := version(); v != "kvmnet v0.9.0\n" {
		t.Fatalf("installed kvmnet --version = %q", v)
	}
	for _, p := range []string{"kvmnet-ifup@lab", "kvmnet-ifdown@lab", "kvmnet-natup@lab", "kvmnet-natdown@lab"} {
		if target, err := os.Readlink(at("usr/libexec/" + p)); err != nil || target != strings.TrimSuffix(p, "@lab") {
			t.Errorf("postinst did not link %s for the configured network lab: %q, %v", p, target, err)
		}
	}
	if err := os.WriteFile(at("var/lib/kvmnet/default.leases"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The upgrade: no network to take down, links and leases kept; a broken
	// configuration only gets a word from postinst.
	conf := mustRead(t, at("etc/kvmnet/kvmnet.toml"))
	if err := os.WriteFile(at("etc/kvmnet/kvmnet.toml"), []byte("bogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := dpkg("-i", cur); err != nil || !strings.Contains(out, "no @NETWORK links made") {
		t.Fatalf("upgrade with a broken configuration: %v\n%s", err, out)
	}
	if err := os.WriteFile(at("etc/kvmnet/kvmnet.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != "kvmnet v0.9.0-1-gabc1234\n" {
		t.Fatalf("upgraded kvmnet --version = %q", v)
	}
	if !exists("usr/libexec/kvmnet-natup@lab") || !exists("var/lib/kvmnet/default.leases") {
		t.Error("the upgrade lost the @lab links or the leases")
	}

	// A VM on the default network: prerm refuses, and the package stays whole.
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	out, err := dpkg("-r", "kvmnet")
	if err == nil || !strings.Contains(out, "networks in use: default by vnet0") || !strings.Contains(out, "kvmnet: not removed") {
		t.Fatalf("dpkg -r with a VM up: %v\n%s", err, out)
	}
	if st := run(t, "dpkg-query", "--admindir="+at("var/lib/dpkg"), "-W", "-f=${db:Status-Status}", "kvmnet"); st != "installed" {
		t.Errorf("after a refused removal the package is %q, want installed", st)
	}
	if !exists("usr/libexec/kvmnet-natdown") || h.Master("vnet0") != "br0" {
		t.Fatal("a refused removal took the helpers or the VM's network")
	}
	h.helper("kvmnet-natdown", "vnet0")
	h.MustRun("ip", "link", "del", "vnet0")

	mustDpkg("-r", "kvmnet")
	for _, p := range []string{"usr/bin/kvmnet", "usr/libexec/kvmnet-natup", "usr/libexec/kvmnet-natup@lab", "usr/libexec/kvmnet-ifdown@lab"} {
		if exists(p) {
			t.Errorf("/%s is left after dpkg -r", p)
		}
	}
	if !exists("var/lib/kvmnet/default.leases") || !exists("etc/kvmnet/kvmnet.toml.example") {
		t.Error("dpkg -r took the leases or the configuration, which only a purge removes")
	}

	// The purges, without the bind mount: their /run/kvmnet is the root's own.
	// The first finds a network up in some namespace and keeps /run/kvmnet.
	write := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(at(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(at(path), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("run/kvmnet/netns-1/default.json")
	purge := func() string {
		t.Helper()
		out, e, err := h.Run("dpkg", "--root="+root, "--purge", "kvmnet")
		if err != nil {
			t.Fatalf("dpkg --purge: %v\n%s%s", err, out, e)
		}
		return out + e
	}
	if out := purge(); !exists("run/kvmnet/netns-1/default.json") || !strings.Contains(out, "/run/kvmnet kept") {
		t.Errorf("the purge removed /run/kvmnet with a network up in a namespace, or said nothing:\n%s", out)
	}
	os.Remove(at("run/kvmnet/netns-1/default.json"))
	write("run/kvmnet/netns-1/default.lock")
	write("var/lib/kvmnet/default.leases")
	mustDpkg("-i", cur)
	if err := os.MkdirAll(at("etc/systemd/system/multi-user.target.wants"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/systemd/system/kvmnet-up@.service", at("etc/systemd/system/multi-user.target.wants/kvmnet-up@default.service")); err != nil {
		t.Fatal(err)
	}
	purge()
	for _, p := range []string{"var/lib/kvmnet", "run/kvmnet", "etc/kvmnet/kvmnet.toml.example", "etc/systemd/system/multi-user.target.wants/kvmnet-up@default.service", "usr/share/man/man1/kvmnet.1.gz", "lib/systemd/system/kvmnet-up@.service"} {
		if exists(p) {
			t.Errorf("/%s is left after dpkg --purge", p)
		}
	}
	if !exists("etc/kvmnet/kvmnet.toml") {
		t.Error("the purge removed the admin's own kvmnet.toml")
	}
	h.AssertClean(rules, fwd)
}
