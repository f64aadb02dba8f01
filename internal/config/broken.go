package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/BurntSushi/toml"
)

// A mistake in one network's section stops that network only: Parse keeps
// the other networks usable, records the broken one's error (with the file
// and line) in File.Broken, and File.Network returns it for that network
// alone. A mistake outside every network's section (a syntax error, a
// top-level key) still stops them all, with its file:line.

// rawFile is the file's first decoding: each network's section left
// undecoded, to be decoded on its own so that its mistakes stay its own.
type rawFile struct {
	LeaseDir string                    `toml:"lease_dir"`
	Firewall Firewall                  `toml:"firewall"`
	Networks map[string]toml.Primitive `toml:"network"`
}

// netError is a mistake that belongs to one network, found by a check
// across networks (a shared bridge, subnet, VNI or port).
type netError struct {
	name string
	err  error
}

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// Err is the first broken network's error, in name order: what a caller
// that needs the whole file right (kvmnet reload, link) reports. Nil when
// no network is broken.
func (f *File) Err() error {
	if len(f.Broken) == 0 {
		return nil
	}
	return f.Broken[slices.Sorted(maps.Keys(f.Broken))[0]]
}

// BrokenNames lists the broken networks, sorted.
func (f *File) BrokenNames() []string { return slices.Sorted(maps.Keys(f.Broken)) }

// breakNetwork takes network name out of the usable ones, keeping its error.
func (f *File) breakNetwork(name string, err error) {
	if f.Broken == nil {
		f.Broken = map[string]error{}
	}
	if _, already := f.Broken[name]; !already {
		f.Broken[name] = err
	}
	if f.brokenBridges == nil {
		f.brokenBridges = map[string]string{}
	}
	f.brokenBridges[f.bridgeOf(name)] = name
	delete(f.Networks, name)
}

// BrokenBridge is the bridge of broken network name, as far as its section
// tells, for status to show.
func (f *File) BrokenBridge(name string) string {
	for br, n := range f.brokenBridges {
		if n == name {
			return br
		}
	}
	return ""
}

// bridgeOf is network name's bridge, also when its section did not decode:
// its bridge key if that is a string, else the bridge named after it.
func (f *File) bridgeOf(name string) string {
	if n := f.Networks[name]; n != nil {
		return n.bridge()
	}
	n := &Network{Name: name}
	if all := decodeValues(f.text); all != nil {
		if nets, ok := all["network"].(map[string]any); ok {
			if sec, ok := nets[name].(map[string]any); ok {
				if br, ok := sec["bridge"].(string); ok && CheckBridgeName(br) == nil {
					n.Bridge = BridgeName(br)
				}
			}
		}
	}
	return n.bridge()
}

// decodeNetwork decodes network name's section into n, its types checked
// first (see checkTypes). Its error is in the file's form.
func (f *File) decodeNetwork(md toml.MetaData, p toml.Primitive, n *Network, values func() map[string]any) error {
	if err := n.checkTypes(md, values); err != nil {
		return f.located(n.Name, err)
	}
	if err := md.PrimitiveDecode(p, n); err != nil {
		return posError(f.Path, err)
	}
	return nil
}

// located puts a network's error in the file's form: FILE:LINE: KEY: ...
// for a mistake in one key, else FILE:LINE: network NAME: ... at the
// network's table.
func (f *File) located(name string, err error) error {
	var ke *keyError
	if errors.As(err, &ke) {
		return fmt.Errorf("%s: network.%s.%s: %s", ke.where(f.Path, f.text, "network."+name), name, ke.key, ke.msg)
	}
	return fmt.Errorf("%s: network %s: %w", where(f.Path, f.text, "network."+name), name, err)
}

// checkNetwork is every check of one network's own section.
func (f *File) checkNetwork(n *Network, dns map[netip.Addr]string) error {
	if err := n.check(dns); err != nil {
		return f.located(n.Name, err)
	}
	if n.Mode == "" {
		return nil // the helper supplies the mode: Network checks it then
	}
	if ke := n.checkModeKeys(n.Mode, f.text); ke != nil {
		return f.located(n.Name, ke)
	}
	if n.Mode.Routed() && !n.Address.IsValid() {
		return f.located(n.Name, keyErrorf("mode", nil, "%s: want an address beside it (e.g. address = \"10.0.0.1/24\")", Quote(string(n.Mode))))
	}
	return nil
}

// checkAcross runs the checks across networks until none fails, taking the
// network each failure names out of the usable ones. A failure that names
// no network stops the whole file.
func (f *File) checkAcross() error {
	for {
		err := f.checkAcrossOnce()
		var ne *netError
		if !errors.As(err, &ne) {
			return err
		}
		f.breakNetwork(ne.name, ne.err)
	}
}

func (f *File) checkAcrossOnce() error {
	b := f.text
	if err := f.checkVXLAN(b); err != nil {
		return err
	}
	if err := f.checkAllowFrom(b); err != nil {
		return err
	}
	if err := f.checkShared6(b); err != nil {
		return err
	}
	if err := f.checkForwardClaims(b, f.names()); err != nil {
		return err
	}
	return f.checkShared(b)
}
