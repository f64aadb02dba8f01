package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/state"
)

// TestPlantedStateLinks: a symbolic link planted in the namespace's state
// directory, where a lock, a record, the forwarding record or the daemon's
// log goes, makes the helper fail in one line naming the link, leaves the
// namespace as it was, and leaves the file it points to untouched.
func TestPlantedStateLinks(t *testing.T) {
	for _, file := range []string{"default.lock", "default.json", "forwarding.state", "default.netsvc.log", "default.netsvc.conf"} {
		t.Run(file, func(t *testing.T) {
			h := newHost(t, "", "")
			tap := h.taps("vnet", 1)[0]
			var dir string
			if err := h.Do(func() error { d, err := state.Open(); dir = d.Path; return err }); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, file)
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
			stderr, err := h.helper("kvmnet-natup", tap)
			if file == "default.netsvc.conf" {
				// Written by rename over the link, never through it: the up works.
				if err != nil {
					t.Fatalf("natup: %v\n%s", err, stderr)
				}
				if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink != 0 {
					t.Errorf("%s is still a link: %v", file, err)
				}
				h.mustHelper("kvmnet-natdown", tap)
			} else {
				want := link + " is a symbolic link, refused"
				if err == nil || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
					t.Errorf("natup: %v, stderr %q; want one line containing %q", err, stderr, want)
				}
				os.Remove(link)
			}
			if b, err := os.ReadFile(target); err != nil || string(b) != "precious\n" {
				t.Errorf("the link's target changed: %q, %v", b, err)
			}
			h.MustRun("ip", "link", "del", tap)
			h.assertClean(rules, fwd)
		})
	}
}
