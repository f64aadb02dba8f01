package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/safefile"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// plant makes name in dir a symbolic link to a file holding "precious", and
// returns a check that the file is still exactly that.
func plant(t *testing.T, dir, name string) func() {
	t.Helper()
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, name)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if b, err := os.ReadFile(target); err != nil || string(b) != "precious" {
			t.Errorf("the target of %s changed: %q, %v", name, b, err)
		}
		os.Remove(link)
	}
}

// TestPlantedSymlinks: a link planted in the state directory is never
// followed: locks and reads refuse it with ErrSymlink, writes replace it,
// and the file it points to is untouched either way.
func TestPlantedSymlinks(t *testing.T) {
	ns := testns.New(t)
	err := ns.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		untouched := plant(t, d.Path, "lab.lock")
		if _, err := d.Lock("lab"); !errors.Is(err, safefile.ErrSymlink) || !strings.Contains(err.Error(), "lab.lock is a symbolic link, refused") {
			t.Errorf("Lock through a planted link: %v", err)
		}
		untouched()

		untouched = plant(t, d.Path, "lab.json")
		if _, _, err := d.Load("lab"); !errors.Is(err, safefile.ErrSymlink) {
			t.Errorf("Load through a planted link: %v", err)
		}
		if err := d.Save(state.Network{Name: "lab"}); err != nil {
			t.Errorf("Save over a planted link: %v", err)
		}
		if fi, err := os.Lstat(d.File("lab", ".json")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("Save left %v, %v; want a plain file", fi, err)
		}
		untouched()

		other := t.TempDir()
		if err := os.Symlink(other, d.File("lab", ".ports")); err != nil {
			return err
		}
		if err := d.AddPort("lab", "vnet0"); !errors.Is(err, safefile.ErrSymlink) {
			t.Errorf("AddPort into a planted directory link: %v", err)
		}
		if _, err := d.AnyPort("lab", func(string) bool { return true }); !errors.Is(err, safefile.ErrSymlink) {
			t.Errorf("AnyPort through a planted directory link: %v", err)
		}
		if ents, _ := os.ReadDir(other); len(ents) != 0 {
			t.Errorf("a port was recorded in the link's target: %v", ents)
		}
		return d.Remove("lab")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStateDirChecked: a namespace's state directory that is a link, someone
// else's, or writable by others is refused with a clear error; a missing one
// is made 0755.
func TestStateDirChecked(t *testing.T) {
	ns := testns.New(t)
	err := ns.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		if fi, err := os.Lstat(d.Path); err != nil || fi.Mode().Perm() != 0o755 || !fi.IsDir() {
			t.Errorf("state directory: %v, %v; want a 0755 directory", fi, err)
		}
		if err := os.Remove(d.Path); err != nil {
			return err
		}
		if err := os.Symlink(t.TempDir(), d.Path); err != nil {
			return err
		}
		if _, err := state.Open(); !errors.Is(err, safefile.ErrSymlink) || !strings.Contains(err.Error(), d.Path) {
			t.Errorf("Open with the directory a link: %v", err)
		}
		if err := os.Remove(d.Path); err != nil {
			return err
		}
		if err := os.Mkdir(d.Path, 0o755); err != nil {
			return err
		}
		for _, tc := range []struct {
			change func() error
			want   string
		}{
			{func() error { return os.Chmod(d.Path, 0o777) }, "writable by group or others (mode 0777)"},
			{func() error { return os.Chown(d.Path, 1000, 1000) }, "owned by uid 1000, not root"},
		} {
			if err := tc.change(); err != nil {
				return err
			}
			if _, err := state.Open(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want …%s…", err, tc.want)
			}
			if err := errors.Join(os.Chmod(d.Path, 0o755), os.Chown(d.Path, 0, 0)); err != nil {
				return err
			}
		}
		_, err = state.Open()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
