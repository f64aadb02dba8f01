package ops

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Links are the kvmnet-HELPER@NETWORK symlinks beside the installed helpers,
// by which QEMU's script= (a path with no arguments) picks a network, as
// `kvmnet link` makes and prunes them. Each points at its helper by the
// relative name kvmnet-HELPER, as `make install NETWORKS=…` makes them.
type Links struct {
	Dir     string   // where the helpers are, e.g. /usr/libexec
	Helpers []string // their names: kvmnet-ifup, kvmnet-ifdown, …
}

// Make makes every helper's link for each network, and returns what it made.
// It first checks every path, and changes nothing when one is taken by
// something other than the link it would make.
//
//	ln -s kvmnet-natup /usr/libexec/kvmnet-natup@lab
func (l Links) Make(networks []string) ([]string, error) {
	var todo []string
	for _, n := range networks {
		for _, h := range l.Helpers {
			path := filepath.Join(l.Dir, h+"@"+n)
			switch target, err := os.Readlink(path); {
			case err == nil && target == h:
			case errors.Is(err, fs.ErrNotExist):
				todo = append(todo, path)
			case err == nil || errors.Is(err, syscall.EINVAL): // EINVAL: not a symlink
				return nil, fmt.Errorf("link %s: taken by something that is not a link to %s", path, h)
			default:
				return nil, fmt.Errorf("link %s: %w", path, err)
			}
		}
	}
	for i, path := range todo {
		helper, _, _ := strings.Cut(filepath.Base(path), "@")
		if err := os.Symlink(helper, path); err != nil {
			return todo[:i], fmt.Errorf("link %s: %w", path, err)
		}
	}
	return todo, nil
}

// Prune removes the links of networks not in keep, and returns what it
// removed. Only symlinks to a helper, by its relative name or its path in
// Dir, are kvmnet's: any other file stays.
//
//	rm /usr/libexec/kvmnet-natup@old
func (l Links) Prune(keep []string) ([]string, error) {
	ents, err := os.ReadDir(l.Dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", l.Dir, err)
	}
	var gone []string
	for _, e := range ents {
		helper, network, ok := strings.Cut(e.Name(), "@")
		if !ok || !slices.Contains(l.Helpers, helper) || slices.Contains(keep, network) || e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		path := filepath.Join(l.Dir, e.Name())
		target, err := os.Readlink(path)
		if err != nil || (target != helper && target != filepath.Join(l.Dir, helper)) {
			continue
		}
		if err := os.Remove(path); err != nil {
			return gone, fmt.Errorf("unlink %s: %w", path, err)
		}
		gone = append(gone, path)
	}
	return gone, nil
}
