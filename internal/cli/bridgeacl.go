package cli

import (
	"slices"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/safefile"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/warm"
)

// bridgeACL is what the bridge helper's front needs of file f and cannot
// read itself (it links no TOML parser): every network --br may name, by
// name or by bridge, with its resolved allow list, under key, the file's
// identity. Each entry is checked against bridgeNetwork itself, so that the
// front's lookup (warm.BridgeACL) names the network the engine would. A
// network that does not resolve leaves the file without a cache: every run
// is the engine's.
func bridgeACL(f *config.File, key string) (*warm.BridgeACL, bool) {
	names := make([]string, 0, len(f.Networks)+1)
	for name := range f.Networks {
		names = append(names, name)
	}
	slices.Sort(names) // the order of f.NetworkOnBridge
	if _, defined := f.Networks[config.DefaultNetwork]; !defined {
		names = append(names, config.DefaultNetwork)
	}
	acl := &warm.BridgeACL{Key: key}
	for _, name := range names {
		n, err := bridgeNetwork(f, name)
		if err != nil || n.Name != name {
			return nil, false
		}
		e := warm.ACLNetwork{Name: name}
		if byBridge, err := bridgeNetwork(f, n.Bridge); err == nil && byBridge.Name == name {
			e.ByBridge = n.Bridge
		}
		for _, a := range n.Allow {
			e.Allow = append(e.Allow, string(a))
		}
		acl.Networks = append(acl.Networks, e)
	}
	return acl, true
}

// writeBridgeACL writes bridgeACL(f, key) where the front reads it, in the
// state directory of the namespace. It is a cache: a failure only costs the
// next runs the engine.
func writeBridgeACL(f *config.File, key string) {
	acl, ok := bridgeACL(f, key)
	d, err := state.Open()
	if !ok || err != nil {
		return
	}
	_ = safefile.WriteAtomic(d.Path+"/"+warm.BridgeACLFile, acl.Marshal(), 0o644)
}
