package ctl

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func oneLease(ip string) LeaseFile {
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	return LeaseFile{Leases: []Lease{{IP: netip.MustParseAddr(ip), MAC: mac, Expires: time.Now().Add(time.Hour)}}}
}

// leftForOlder writes a namespace's lease file, lab@ns1.leases, and leaves
// its copy, lab.leases, for an older release.
func leftForOlder(t *testing.T) (dir, ns, older string) {
	t.Helper()
	dir = t.TempDir()
	ns, older = filepath.Join(dir, "lab@ns1.leases"), filepath.Join(dir, "lab.leases")
	if err := WriteLeaseFile(ns, oneLease("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	if err := LeaveForOlder(ns); err != nil {
		t.Fatal(err)
	}
	return dir, ns, older
}

// TestLeaveForOlder: a namespace's leases are copied to NAME.leases, marked,
// where no one's own leases are; this release reads the copy as no leases
// under that name, its own under the copied name; the host's leases and a
// held lock are left alone.
func TestLeaveForOlder(t *testing.T) {
	dir, ns, older := leftForOlder(t)
	if lf, err := ReadLeaseFile(older); err != nil || len(lf.Leases) != 0 || lf.CopyOf != "lab@ns1.leases" {
		t.Errorf("lab.leases read by this release: %+v, %v; want a copy of lab@ns1.leases with no leases", lf, err)
	}
	b, _ := os.ReadFile(older)
	var raw leaseFileJSON
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Leases) != 1 || raw.Leases[0].IP.String() != "10.0.0.5" {
		t.Errorf("lab.leases as an older release reads it: %s", b)
	}

	// Its own earlier copy is refreshed.
	if err := WriteLeaseFile(ns, oneLease("10.0.0.6")); err != nil {
		t.Fatal(err)
	}
	if err := LeaveForOlder(ns); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(older); !bytes.Contains(b, []byte("10.0.0.6")) {
		t.Errorf("the copy was not refreshed: %s", b)
	}

	// The host's own leases, and another namespace's copy, stay.
	for _, have := range []LeaseFile{oneLease("10.0.0.9"), func() LeaseFile { lf := oneLease("10.0.0.9"); lf.CopyOf = "lab@ns2.leases"; return lf }()} {
		if err := WriteLeaseFile(older, have); err != nil {
			t.Fatal(err)
		}
		if err := LeaveForOlder(ns); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(older); !bytes.Contains(b, []byte("10.0.0.9")) {
			t.Errorf("lab.leases (copy_of %q) was overwritten: %s", have.CopyOf, b)
		}
	}

	// A daemon holds lab.leases: nothing is written.
	os.Remove(older)
	lock, err := LockLeaseFile(older)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := LeaveForOlder(ns); err != nil {
		t.Errorf("LeaveForOlder beside a held lock: %v, want nothing done", err)
	}
	if _, err := os.Lstat(older); err == nil {
		t.Error("lab.leases written while its lock was held")
	}

	// The host namespace's file has nothing to leave.
	if err := LeaveForOlder(filepath.Join(dir, "web.leases")); err != nil {
		t.Error(err)
	}
}

// TestFollowTakesOlderBack: after a downgrade, the older daemon's own
// NAME.leases, newer than this release's NAME@NETNS.leases, replaces it;
// an unchanged copy does not.
func TestFollowTakesOlderBack(t *testing.T) {
	_, ns, older := leftForOlder(t)
	if olderDaemonsFile(older, ns) {
		t.Error("an unchanged copy counts as the older daemon's file")
	}
	if err := WriteLeaseFile(older, oneLease("10.0.0.7")); err != nil { // the older daemon rewrote it
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(ns, past, past); err != nil {
		t.Fatal(err)
	}
	if !olderDaemonsFile(older, ns) {
		t.Error("the older daemon's newer file does not count")
	}
	if err := os.Chtimes(older, past.Add(-time.Minute), past.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if olderDaemonsFile(older, ns) {
		t.Error("an older daemon's file older than this release's counts")
	}
}
