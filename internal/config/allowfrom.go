package config

import "fmt"

// checkAllowFrom reports the first wrong allow_from of the file: each name
// must be another network of the file (or the built-in default), named once.
// Traffic between kvmnet networks is refused both ways unless the network it
// goes into lists the one it comes from.
func (f *File) checkAllowFrom(b []byte) error {
	for _, name := range f.names() {
		seen := map[string]bool{}
		for _, from := range f.Networks[name].AllowFrom {
			var why string
			switch {
			case from == name:
				why = "a network always reaches itself"
			case f.Networks[from] == nil && f.Broken[from] == nil && from != DefaultNetwork:
				why = "no such network in " + f.Path
			case seen[from]:
				why = "named twice"
			}
			if why != "" {
				return &netError{name, fmt.Errorf("%s: network.%s.allow_from: %s: %s", whereIn(f.Path, b, "network."+name, "allow_from"), name, Quote(from), why)}
			}
			seen[from] = true
		}
	}
	return nil
}

// allowFromBridges is n's allow_from as the bridges of those networks, which
// is what the rules match on.
func (f *File) allowFromBridges(n *Network) []string {
	var bridges []string
	for _, from := range n.AllowFrom {
		if f.Broken[from] != nil {
			continue // its bridge is unknown; it cannot come up anyway
		}
		other := f.Networks[from]
		if other == nil {
			other = &Network{Name: from}
		}
		bridges = append(bridges, other.bridge())
	}
	return bridges
}
