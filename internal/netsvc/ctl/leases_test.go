package ctl

import (
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
	if err != nil || len(all) != 2 || all[0].IP.String() != "192.168.100.5" || all[0].ClientID != "01aa" ||
		all[1].Hostname != "web" {
		t.Fatalf("ReadLeaseFile = %+v %v", all, err)
	}
	active, err := Leases(path)
	if err != nil || len(active) != 1 || active[0].IP.String() != "192.168.100.9" {
		t.Fatalf("Leases = %+v %v", active, err)
	}
	if err := WriteLeaseFile(path, all); err != nil {
		t.Fatal(err)
	}
	again, err := ReadLeaseFile(path)
	if err != nil || len(again) != 2 || !again[1].Expires.Equal(future) || again[1].MAC.String() != "52:54:00:00:00:09" {
		t.Errorf("round trip = %+v %v", again, err)
	}
	if none, err := Leases(filepath.Join(t.TempDir(), "missing")); err != nil || none != nil {
		t.Errorf("missing file: %v %v", none, err)
	}
}
