package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A downgrade past per-namespace lease files. Releases before them read
// lease_dir/NAME.leases in every network namespace; this one gives a
// network in a namespace other than the host's NAME@NETNS.leases
// (LeaseFileInNetns), and FollowLeaseFile moves an older daemon's file
// there. An older release cannot be taught to look for the new name, so the
// newer leaves its leases where the older looks: when its daemon exits, a
// copy of NAME@NETNS.leases goes to NAME.leases, marked copy_of (which older
// daemons ignore and drop when they next write). An older daemon started
// after a downgrade then gives the guests their addresses back; this
// release reads a marked copy under any other name as no leases at all (it
// is another namespace's), and FollowLeaseFile takes the older daemon's file
// back on the next upgrade.

// LeaveForOlder writes the copy of lease file path (NAME@NETNS.leases) to
// NAME.leases beside it, for an older release, where that name holds no
// one's own leases: it is absent, or an earlier copy of path. It holds
// NAME.leases's lock meanwhile, as a daemon does, and writes nothing while a
// daemon (the host namespace's network NAME, another namespace's older
// release) holds it. A path of the host's namespace (no @) has nothing to leave.
//
//	cp lease_dir/NAME@NETNS.leases lease_dir/NAME.leases
func LeaveForOlder(path string) error {
	dir, base := filepath.Split(path)
	name, tag, ok := strings.Cut(strings.TrimSuffix(base, ".leases"), "@") // a network's name has no '@'
	if !ok || tag == "" || name == "" {
		return nil
	}
	older := filepath.Join(dir, name+".leases")
	lock, err := LockLeaseFile(older)
	if errors.Is(err, ErrLeaseFileInUse) {
		return nil // a daemon's own leases
	}
	if err != nil {
		return fmt.Errorf("leave leases for an older kvmnet: %w", err)
	}
	defer lock.Close()
	have, err := ReadLeaseFile(older)
	if err != nil {
		return nil // not a lease file of kvmnet's: someone's, left alone
	}
	if _, err := os.Lstat(older); err == nil && have.CopyOf != base {
		return nil // the host namespace's network's own leases
	}
	lf, err := ReadLeaseFile(path)
	if err != nil {
		return fmt.Errorf("leave leases for an older kvmnet: %w", err)
	}
	lf.CopyOf = base
	if err := WriteLeaseFile(older, lf); err != nil {
		return fmt.Errorf("leave leases for an older kvmnet: %w", err)
	}
	return nil
}

// olderDaemonsFile reports whether lease file used, which an older
// release's daemon was given, holds that daemon's own leases, written after
// want's: the older release ran this network last (a downgrade, then this
// upgrade), and its leases are the ones to keep. A copy LeaveForOlder left
// that no older daemon rewrote is not.
func olderDaemonsFile(used, want string) bool {
	lf, err := ReadLeaseFile(used)
	if err != nil || lf.CopyOf != "" {
		return false
	}
	u, err := os.Lstat(used)
	if err != nil || !u.Mode().IsRegular() {
		return false
	}
	w, err := os.Lstat(want)
	return err == nil && u.ModTime().After(w.ModTime())
}
