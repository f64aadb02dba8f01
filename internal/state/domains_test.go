package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDomainRecords(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	dom := Domain{UUID: "71e034e8-8034-44b1-9a13-590d20154371", Name: "web 1", Since: time.Now().Round(0)}
	if err := d.SaveDomain("lab", dom); err != nil {
		t.Fatal(err)
	}
	dom.Taps = []string{"vnet0"}
	if err := d.SaveDomain("lab", dom); err != nil {
		t.Fatal(err)
	}
	got, ok, err := d.LoadDomain("lab", dom.UUID)
	if err != nil || !ok || got.Name != dom.Name || len(got.Taps) != 1 || !got.Since.Equal(dom.Since) {
		t.Fatalf("LoadDomain = %+v, %v, %v; want %+v", got, ok, err, dom)
	}
	if nets, err := d.DomainNetworks(dom.UUID); err != nil || len(nets) != 0 {
		t.Errorf("DomainNetworks without a network record = %v, %v", nets, err)
	}
	if err := d.Save(Network{Name: "lab"}); err != nil {
		t.Fatal(err)
	}
	if nets, err := d.DomainNetworks(dom.UUID); err != nil || len(nets) != 1 || nets[0] != "lab" {
		t.Errorf("DomainNetworks = %v, %v, want [lab]", nets, err)
	}
	busy, err := d.AnyDomain("lab", func(Domain) bool { return false })
	if err != nil || busy {
		t.Fatalf("AnyDomain with no live domain = %v, %v", busy, err)
	}
	if _, ok, _ := d.LoadDomain("lab", dom.UUID); ok {
		t.Error("AnyDomain kept a dead domain")
	}
	if err := d.DelDomain("lab", dom.UUID); err != nil {
		t.Errorf("forgetting a forgotten domain: %v", err)
	}
	if err := d.SaveDomain("lab", Domain{UUID: "../x"}); err == nil {
		t.Error("a uuid with a path in it was accepted")
	}
}

func TestDomainRecordsRefuseSymlinks(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(d.Path, "lab.domains")); err != nil {
		t.Fatal(err)
	}
	uuid := "71e034e8-8034-44b1-9a13-590d20154371"
	if err := d.SaveDomain("lab", Domain{UUID: uuid}); !errors.Is(err, ErrSymlink) {
		t.Errorf("SaveDomain through a linked directory: %v, want ErrSymlink", err)
	}
	os.Remove(filepath.Join(d.Path, "lab.domains"))
	if err := d.SaveDomain("lab", Domain{UUID: uuid}); err != nil {
		t.Fatal(err)
	}
	// A link in place of a record is read as no record and replaced, never followed.
	target := filepath.Join(elsewhere, "victim")
	rec := filepath.Join(d.Path, "lab.domains", uuid)
	os.Remove(rec)
	if err := os.Symlink(target, rec); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.LoadDomain("lab", uuid); err == nil {
		t.Error("LoadDomain followed a link")
	}
	if err := d.SaveDomain("lab", Domain{UUID: uuid}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("SaveDomain wrote through a link")
	}
}

func TestLockWait(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	held, err := d.Lock("lab")
	if err != nil {
		t.Fatal(err)
	}
	d.LockWait = 20 * time.Millisecond
	if _, err := d.Lock("lab"); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Lock while held: %v, want ErrLockTimeout", err)
	}
	held.Unlock()
	lk, err := d.Lock("lab")
	if err != nil {
		t.Fatalf("Lock once released: %v", err)
	}
	lk.Unlock()
}
