package ctl

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLeaseFile: bad entries cost only themselves, hostnames are sanitized on
// the way in, Leases drops the expired, and what WriteLeaseFile writes reads
// back the same.
func TestLeaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.json")
	future := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	file := `{"version":1,"leases":[
 {"ip":"192.168.100.9","mac":"52:54:00:00:00:09","hostname":"Web.Example","expires":"` + future.Format(time.RFC3339) + `"},
 {"ip":"192.168.100.3","mac":"not a mac","expires":"` + future.Format(time.RFC3339) + `"},
 {"ip":"192.168.100.5","mac":"52:54:00:00:00:05","client_id":"01aa","expires":"2000-01-01T00:00:00Z"}]}`
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	all, err := ReadLeaseFile(path)
	if err != nil || len(all.Leases) != 2 || all.Leases[0].IP.String() != "192.168.100.5" ||
		all.Leases[0].ClientID != "01aa" || all.Leases[1].Hostname != "web" {
		t.Fatalf("ReadLeaseFile = %+v %v", all, err)
	}
	all.Held = []Held{{IP: netip.MustParseAddr("192.168.100.7"), Until: future}}
	active, err := Leases(path)
	if err != nil || len(active) != 1 || active[0].IP.String() != "192.168.100.9" {
		t.Fatalf("Leases = %+v %v", active, err)
	}
	if err := WriteLeaseFile(path, all); err != nil {
		t.Fatal(err)
	}
	again, err := ReadLeaseFile(path)
	if err != nil || len(again.Leases) != 2 || !again.Leases[1].Expires.Equal(future) ||
		again.Leases[1].MAC.String() != "52:54:00:00:00:09" || len(again.Held) != 1 || !again.Held[0].Until.Equal(future) {
		t.Errorf("round trip = %+v %v", again, err)
	}
	if none, err := Leases(filepath.Join(t.TempDir(), "missing")); err != nil || none != nil {
		t.Errorf("missing file: %v %v", none, err)
	}
}

// TestBadLeaseFile: an empty, corrupt or linked lease file reads as
// ErrBadLeaseFile, a link is never followed, and a directory is another error.
func TestBadLeaseFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(`{"version":1,"leases":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, make := range map[string]func(string) error{
		"empty":   func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"corrupt": func(p string) error { return os.WriteFile(p, []byte(`{"version":1,"leases":[{"ip"`), 0o644) },
		"version": func(p string) error { return os.WriteFile(p, []byte(`{"version":7}`), 0o644) },
		"symlink": func(p string) error { return os.Symlink(secret, p) },
	} {
		path := filepath.Join(dir, name+".leases")
		if err := make(path); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadLeaseFile(path); !errors.Is(err, ErrBadLeaseFile) {
			t.Errorf("%s: err = %v, want ErrBadLeaseFile", name, err)
		}
	}
	if _, err := ReadLeaseFile(dir); err == nil || errors.Is(err, ErrBadLeaseFile) {
		t.Errorf("directory: err = %v, want a plain error", err)
	}
}

// TestLockLeaseFile: a second lock on the same lease file fails with a clear
// error until the first is released.
func TestLockLeaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "default.leases")
	first, err := LockLeaseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockLeaseFile(path); err == nil || err.Error() != "lease file "+path+": in use by another netsvc daemon ("+path+".lock is locked)" {
		t.Errorf("second lock: %v", err)
	}
	first.Close()
	again, err := LockLeaseFile(path)
	if err != nil {
		t.Errorf("lock after release: %v", err)
	}
	again.Close()
}
