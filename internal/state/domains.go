package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The libvirt domains that use a network through kvmnet's libvirt hook are
// files in <network>.domains/, one per domain, named by its UUID (a domain's
// name may hold any character; its UUID is hex and dashes). The hook writes
// them as root on libvirt's behalf, so every open refuses to follow a
// symbolic link: a link planted in the state directory must not turn a
// record into a write elsewhere.

// Domain is a libvirt domain using a network: libvirt attached its taps to
// the network's bridge itself, and the hook told kvmnet.
type Domain struct {
	UUID  string    `json:"uuid"`
	Name  string    `json:"name"`
	Taps  []string  `json:"taps,omitempty"` // libvirt's taps on the bridge, known from the `start` hook on
	Since time.Time `json:"since"`          // when its `prepare` hook ran
}

const domainsExt = ".domains"

// ErrSymlink is returned for a symbolic link where kvmnet keeps a record.
var ErrSymlink = errors.New("is a symbolic link: refused")

// maxDomainFile bounds a record's size when reading one back.
const maxDomainFile = 64 << 10

// SaveDomain records that dom uses the network, replacing an earlier record of it.
func (d Dir) SaveDomain(network string, dom Domain) error {
	if err := CheckName(dom.UUID); err != nil {
		return err
	}
	b, err := json.Marshal(dom)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir, err := d.domainsDir(network, true)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	tmp := dom.UUID + ".tmp" + strconv.Itoa(os.Getpid())
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// rename(2) replaces a link at the destination; it never follows it.
		err = unix.Renameat(dir, tmp, dir, dom.UUID)
	}
	if err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return fmt.Errorf("write %s: %w", dom.UUID, err)
	}
	return nil
}

// LoadDomain returns the record of domain uuid on the network; ok is false when there is none.
func (d Dir) LoadDomain(network, uuid string) (dom Domain, ok bool, err error) {
	if err := CheckName(uuid); err != nil {
		return dom, false, err
	}
	dir, err := d.domainsDir(network, false)
	if errors.Is(err, fs.ErrNotExist) {
		return dom, false, nil
	}
	if err != nil {
		return dom, false, fmt.Errorf("read domain %s: %w", uuid, err)
	}
	defer unix.Close(dir)
	return readDomain(dir, uuid)
}

func readDomain(dir int, uuid string) (dom Domain, ok bool, err error) {
	fd, err := unix.Openat(dir, uuid, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return dom, false, nil
	}
	if err != nil {
		return dom, false, fmt.Errorf("read domain %s: %w", uuid, err)
	}
	f := os.NewFile(uintptr(fd), uuid)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDomainFile))
	if err != nil {
		return dom, false, fmt.Errorf("read domain %s: %w", uuid, err)
	}
	if err := json.Unmarshal(b, &dom); err != nil {
		return dom, false, fmt.Errorf("read domain %s: %w", uuid, err)
	}
	return dom, true, nil
}

// DelDomain forgets domain uuid on the network; forgetting one not recorded is not an error.
func (d Dir) DelDomain(network, uuid string) error {
	if err := CheckName(uuid); err != nil {
		return err
	}
	dir, err := d.domainsDir(network, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forget domain %s: %w", uuid, err)
	}
	defer unix.Close(dir)
	if err := unix.Unlinkat(dir, uuid, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("forget domain %s: %w", uuid, err)
	}
	return nil
}

// Domains lists the domains recorded on the network, for status.
func (d Dir) Domains(network string) ([]Domain, error) {
	var out []Domain
	_, err := d.eachDomain(network, func(dom Domain) bool {
		out = append(out, dom)
		return false
	})
	return out, err
}

// AnyDomain calls live for the domains recorded on the network until it
// returns true, and reports whether one did. Domains for which live returns
// false are forgotten, as AnyPort forgets dead taps.
func (d Dir) AnyDomain(network string, live func(Domain) bool) (bool, error) {
	var dead []string
	found, err := d.eachDomain(network, func(dom Domain) bool {
		if live(dom) {
			return true
		}
		dead = append(dead, dom.UUID)
		return false
	})
	for _, uuid := range dead {
		if err == nil {
			err = d.DelDomain(network, uuid)
		}
	}
	return found, err
}

// eachDomain calls f for each recorded domain until it returns true.
func (d Dir) eachDomain(network string, f func(Domain) bool) (bool, error) {
	dir, err := d.domainsDir(network, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read domains: %w", err)
	}
	defer unix.Close(dir)
	names, err := readNames(dir)
	if err != nil {
		return false, fmt.Errorf("read domains: %w", err)
	}
	for _, uuid := range names {
		if CheckName(uuid) != nil { // a temporary file of a write under way
			continue
		}
		dom, ok, err := readDomain(dir, uuid)
		if err != nil {
			return false, err
		}
		if ok && f(dom) {
			return true, nil
		}
	}
	return false, nil
}

// DomainNetworks lists the networks on which domain uuid is recorded.
func (d Dir) DomainNetworks(uuid string) ([]string, error) {
	if err := CheckName(uuid); err != nil {
		return nil, err
	}
	names, err := d.Networks()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(d.file(n, domainsExt), uuid)); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// domainsDir opens the network's domains directory (making it when create),
// refusing a symbolic link in its place.
func (d Dir) domainsDir(network string, create bool) (int, error) {
	if err := CheckName(network); err != nil {
		return -1, err
	}
	path := d.file(network, domainsExt)
	if create {
		if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return -1, err
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, nil
	}
	if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return -1, fmt.Errorf("%s: %w", path, ErrSymlink)
	}
	return -1, &fs.PathError{Op: "open", Path: path, Err: err}
}

// readNames lists the entries of the open directory dir.
func readNames(dir int) ([]string, error) {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}
