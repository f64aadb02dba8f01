package operator

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sudoPath is sudo's secure_path on Debian: no Go in it.
const sudoPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// TestMakeInstall follows the README's Install as typed: `make build` as a
// user, then `make install` with sudo's PATH (no Go), into a DESTDIR, with
// LINK_QEMU over a qemu-ifup of the qemu package's and NETWORKS: what the .deb
// installs (the unit, man pages, example configuration) included; `kvmnet
// link` from the installed tree; an upgrade (install again) keeps an edited
// example; then `make uninstall` leaves nothing of kvmnet's but that edited
// example, and puts qemu-ifup back; the README's last line of "Removing
// everything" removes the rest.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kvmnet from scratch as an unprivileged user: skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs go and root (to become nobody)")
	}
	src := userTree(t)
	make := func(env []string, args ...string) (string, error) {
		c := exec.Command("env", append(append([]string{"-i"}, env...), append([]string{"make"}, args...)...)...)
		c.Dir = src
		out, err := c.CombinedOutput()
		return string(out), err
	}
	dest := t.TempDir()

	// Without a build first: one line that says what to do, and nothing installed.
	out, err := make([]string{sudoPath}, "install", "DESTDIR="+dest)
	if err == nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "bin/kvmnet is missing: run make build first") {
		t.Fatalf("make install before make build: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Fatal("a failed make install installed something")
	}

	user := []string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "-i",
		"HOME=" + src, "GOCACHE=" + filepath.Join(src, ".cache"), "GOTOOLCHAIN=local",
		"PATH=" + filepath.Dir(goBin) + ":/usr/bin:/bin", "make", "-C", src, "build"}
	if out, err := exec.Command(user[0], user[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("make build as nobody: %v\n%s", err, out)
	}

	if err := os.MkdirAll(filepath.Join(dest, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	qemuIfup := filepath.Join(dest, "etc/qemu-ifup")
	if err := os.WriteFile(qemuIfup, []byte("#!/bin/sh\n# the qemu package's\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := make([]string{sudoPath}, "-s", "install", "DESTDIR="+dest, "LINK_QEMU=1", "NETWORKS=lab"); err != nil {
		t.Fatalf("make install with sudo's PATH: %v\n%s", err, out)
	}
	for path, target := range map[string]string{
		"etc/qemu-ifup": "/usr/libexec/kvmnet-natup", "etc/qemu-ifdown": "/usr/libexec/kvmnet-natdown",
		"usr/libexec/kvmnet-natup@lab": "kvmnet-natup", "usr/libexec/kvmnet-ifdown@lab": "kvmnet-ifdown",
	} {
		if got, err := os.Readlink(filepath.Join(dest, path)); err != nil || got != target {
			t.Errorf("/%s -> %q (%v), want %s", path, got, err, target)
		}
	}
	if fi, err := os.Stat(filepath.Join(dest, "usr/libexec/kvmnet-bridge-helper")); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("/usr/libexec/kvmnet-bridge-helper: %v, %v; want setuid, 0755", err, fi)
	}
	if fi, err := os.Stat(filepath.Join(dest, "usr/libexec/kvmnet-netsvc")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("/usr/libexec/kvmnet-netsvc: %v, %v; want 0755", err, fi)
	}
	if b, err := os.ReadFile(qemuIfup + ".before-kvmnet"); err != nil || !strings.Contains(string(b), "qemu package") {
		t.Errorf("the qemu package's qemu-ifup was not kept aside: %v", err)
	}
	if out, err := exec.Command(filepath.Join(dest, "usr/bin/kvmnet"), "version").Output(); err != nil || !strings.HasPrefix(string(out), "kvmnet ") {
		t.Errorf("installed kvmnet version: %v %q", err, out)
	}
	checkInstalled(t, dest)

	// An upgrade: install again over an example the admin edited.
	example := filepath.Join(dest, "etc/kvmnet/kvmnet.toml.example")
	if err := os.WriteFile(example, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := readmeTasks["make build && sudo make install"]; !ok {
		t.Fatal("the README's install line is not in readmeTasks")
	}
	if out, err := make([]string{sudoPath}, "-s", "install", "DESTDIR="+dest); err != nil {
		t.Fatalf("make install over an installed kvmnet: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(example); string(b) != "# mine\n" {
		t.Errorf("make install overwrote an edited example: %q", b)
	}

	// kvmnet link from the installed tree adds dmz's links beside the helpers.
	conf := filepath.Join(t.TempDir(), "kvmnet.toml")
	if err := os.WriteFile(conf, []byte("[network.dmz]\nmode = \"isolated\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("env", "KVMNET_CONFIG="+conf, filepath.Join(dest, "usr/bin/kvmnet"), "link").CombinedOutput(); err != nil {
		t.Fatalf("installed kvmnet link: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(dest, "usr/libexec/kvmnet-natup@dmz")); err != nil {
		t.Errorf("kvmnet link made no kvmnet-natup@dmz: %v", err)
	}
	mine := filepath.Join(dest, "usr/libexec/kvmnet-natup@mine")
	if err := os.Symlink("/opt/mine/natup", mine); err != nil {
		t.Fatal(err)
	}

	if out, err := make([]string{sudoPath}, "-s", "uninstall", "DESTDIR="+dest); err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	var left []string
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, strings.TrimPrefix(p, dest))
		}
		return err
	})
	if want := []string{"/etc/kvmnet/kvmnet.toml.example", "/etc/qemu-ifup", "/usr/libexec/kvmnet-natup@mine"}; !slices.Equal(left, want) {
		t.Errorf("after make uninstall: %v, want only %v (not kvmnet's, or edited)", left, want)
	}
	if b, _ := os.ReadFile(qemuIfup); !strings.Contains(string(b), "qemu package") {
		t.Error("make uninstall did not put the qemu package's qemu-ifup back")
	}

	// An unchanged example goes with make uninstall, and with it /etc/kvmnet.
	fresh := t.TempDir()
	for _, target := range []string{"install", "uninstall"} {
		if out, err := make([]string{sudoPath}, "-s", target, "DESTDIR="+fresh); err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(fresh, "etc/kvmnet")); !os.IsNotExist(err) {
		t.Errorf("after installing and uninstalling, /etc/kvmnet: %v, want gone", err)
	}

	// What make uninstall leaves, the README's last removal line removes.
	for _, f := range []string{"var/lib/kvmnet/default.leases", "run/kvmnet/netns-1/default.lock", "etc/kvmnet/kvmnet.toml"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dest, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dest, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rm := "sudo rm -rf /var/lib/kvmnet /run/kvmnet /etc/kvmnet"
	if _, ok := readmeTasks[rm]; !ok {
		t.Fatalf("%q is not in readmeTasks", rm)
	}
	argv := strings.Fields(strings.ReplaceAll(strings.TrimPrefix(rm, "sudo "), " /", " "+dest+"/"))
	run(t, argv...)
	for _, d := range []string{"var/lib/kvmnet", "run/kvmnet", "etc/kvmnet"} {
		if _, err := os.Stat(filepath.Join(dest, d)); !os.IsNotExist(err) {
			t.Errorf("/%s after %s: %v", d, rm, err)
		}
	}
}

// checkInstalled: make install put there what the .deb installs beside the
// binaries: the boot unit, naming the installed kvmnet, the man pages, the
// README and docs/, and the example configuration.
func checkInstalled(t *testing.T, dest string) {
	t.Helper()
	for _, f := range []string{"usr/share/man/man1/kvmnet.1.gz", "usr/share/man/man8/kvmnet-natup.8.gz",
		"usr/share/man/man8/kvmnet-ifdown.8.gz", "usr/share/man/man8/kvmnet-bridge-helper.8.gz",
		"usr/share/man/man8/kvmnet-libvirt-hook.8.gz"} {
		if fi, err := os.Stat(filepath.Join(dest, f)); err != nil || fi.Mode().Perm() != 0o644 || fi.Size() == 0 {
			t.Errorf("/%s: %v, %v; want a page, mode 0644", f, err, fi)
		}
	}
	if got, want := mustRead(t, filepath.Join(dest, "usr/share/doc/kvmnet/docs/security.md")), mustRead(t, "../../docs/security.md"); got != want {
		t.Error("/usr/share/doc/kvmnet/docs/security.md is not docs/security.md")
	}
	unit := mustRead(t, filepath.Join(dest, "lib/systemd/system/kvmnet-up@.service"))
	if !strings.Contains(unit, "ExecStart=/usr/bin/kvmnet up %i") || !strings.Contains(unit, "ExecStop=/usr/bin/kvmnet down %i") {
		t.Errorf("installed kvmnet-up@.service:\n%s", unit)
	}
	if got, want := mustRead(t, filepath.Join(dest, "etc/kvmnet/kvmnet.toml.example")), mustRead(t, "../../packaging/kvmnet.toml.example"); got != want {
		t.Error("/etc/kvmnet/kvmnet.toml.example is not packaging's example")
	}
}

// userTree copies the source tree, with its modules vendored, to a directory
// nobody owns, as a user's checkout with no access to root's module cache.
func userTree(t *testing.T) string {
	t.Helper()
	src, err := os.MkdirTemp("", "kvmnet-src-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(src) })
	run(t, "sh", "-c", `tar -C ../.. --exclude=./bin --exclude=./dist --exclude=./.git -cf - . | tar -C "$0" -xf -`, src)
	vendor := exec.Command("go", "mod", "vendor")
	vendor.Dir = src
	if out, err := vendor.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	run(t, "chmod", "0755", src)
	run(t, "chown", "-R", "nobody:nogroup", src)
	return src
}
