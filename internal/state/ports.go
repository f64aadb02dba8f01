package state

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/kvmnet/kvmnet/internal/safefile"
)

// The ports kvmnet attached to a network are empty files in <network>.ports/,
// one per tap. A directory rather than a list in the record keeps a VM's up
// and down constant-time however many VMs share the bridge: neither rewrites
// the others' entries, and "is anyone left?" reads only until it finds one.

// AddPort records that tap is attached, or about to be, to the network.
func (d Dir) AddPort(network, tap string) error {
	dir := d.file(network, ".ports")
	if err := ensureDir(dir); err != nil {
		return fmt.Errorf("record port: %w", err)
	}
	f, err := safefile.Open(filepath.Join(dir, tap), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("record port: %w", err)
	}
	return f.Close()
}

// HasPort reports whether tap is recorded as attached by kvmnet to the network.
func (d Dir) HasPort(network, tap string) (bool, error) {
	_, err := os.Lstat(filepath.Join(d.file(network, ".ports"), tap))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read ports: %w", err)
	}
	return true, nil
}

// DelPort forgets tap; forgetting one not recorded is not an error.
func (d Dir) DelPort(network, tap string) error {
	err := os.Remove(filepath.Join(d.file(network, ".ports"), tap))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget port: %w", err)
	}
	return nil
}

// AnyPort calls live for recorded ports until it returns true, and reports
// whether one did. Ports for which live returns false are forgotten: they
// belonged to VMs killed without a downscript.
func (d Dir) AnyPort(network string, live func(tap string) bool) (bool, error) {
	dir, err := safefile.OpenDir(d.file(network, ".ports"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read ports: %w", err)
	}
	defer dir.Close()
	for {
		names, err := dir.Readdirnames(16)
		for _, tap := range names {
			if live(tap) {
				return true, nil
			}
			if err := d.DelPort(network, tap); err != nil {
				return false, err
			}
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read ports: %w", err)
		}
	}
}

// PortNames lists the recorded ports of a network, for status and gc.
func (d Dir) PortNames(network string) ([]string, error) {
	dir, err := safefile.OpenDir(d.file(network, ".ports"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ports: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read ports: %w", err)
	}
	slices.Sort(names)
	return names, nil
}
