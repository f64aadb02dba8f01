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
	// The real version, so that the bin/ make rebuilds is what `make build` makes.
	version := strings.TrimSpace(run(t, "git", "-C", "../..", "describe", "--tags", "--always", "--dirty"))
	debVersion := strings.TrimSpace(run(t, "../../packaging/debversion.sh", version))
	dist := t.TempDir()
	run(t, "make", "-s", "-C", "../..", "deb", "VERSION="+version, "DISTDIR="+dist)
	deb := filepath.Join(dist, "kvmnet_"+debVersion+"_amd64.deb")

	for field, want := range map[string]string{
		"Package": "kvmnet", "Version": debVersion, "Architecture": "amd64", "Depends": "iptables",
	} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	for path, mode := range map[string]os.FileMode{
		"usr/bin/kvmnet": 0o755, "usr/libexec/kvmnet-ifup": 0o755, "usr/libexec/kvmnet-ifdown": 0o755,
		"usr/libexec/kvmnet-natup": 0o755, "usr/libexec/kvmnet-natdown": 0o755,
		"usr/libexec/kvmnet-libvirt-hook": 0o755, "usr/share/man/man8/kvmnet-libvirt-hook.8.gz": 0o644,
		"etc/kvmnet/kvmnet.toml.example": 0o644, "lib/systemd/system/kvmnet-up@.service": 0o644,
		"usr/share/man/man1/kvmnet.1.gz": 0o644, "usr/share/man/man8/kvmnet-natup.8.gz": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("/%s: %v, mode %v, want %v", path, err, fi, mode)
		}
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
