package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/kvmnet/kvmnet/internal/safefile"
)

// The generation file (NETWORK.gen in the state directory, warm.GenExt)
// holds one nf_tables ruleset generation at which the network's rules were
// whole, in decimal and a newline. The up writes it under the network's lock
// with the hot file, the generation it proved; the daemon and the rule
// watcher, which change only the guard's set elements, move it to the
// generation their own transaction made when nfgen.Follow proves that it
// was the only one since (docs/guard.md). A front whose hot file's nftgen is
// no longer the kernel's takes this one instead: every value ever written
// here was a generation of whole rules, and the generation only grows, so a
// stale one never equals the kernel's.

// WriteGen records gen in the generation file at path, atomically.
func WriteGen(path string, gen uint32) error {
	return safefile.WriteAtomic(path, []byte(strconv.FormatUint(uint64(gen), 10)+"\n"), 0o644)
}

// ReadGen reads the generation file at path.
func ReadGen(path string) (uint32, error) {
	b, err := safefile.ReadFile(path, 16)
	if err != nil {
		return 0, err
	}
	g, err := strconv.ParseUint(strings.TrimSuffix(string(b), "\n"), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("generation file %s: %w", path, err)
	}
	return uint32(g), nil
}

// AdvanceGen moves the generation file at path from from to gen, only if it
// still holds from: the down removes it after it stopped the daemon or
// watcher that moves it, and one of theirs in flight must not leave it
// behind; an up, which does not take the daemon's lock, may have written a
// newer generation since from was read, which gen must not overwrite.
func AdvanceGen(path string, from, gen uint32) error {
	have, err := ReadGen(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if have != from {
		return nil
	}
	return WriteGen(path, gen)
}
