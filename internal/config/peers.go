package config

import "slices"

// peerBridges are the bridges a network's rules shut out explicitly. A routed
// network lets new connections into its subnet from any interface (the
// upstream router's is not known by name), so it would let other kvmnet
// networks' guests in too: its rules refuse every other network's bridge,
// and every other network's rules refuse the routed networks' bridges, so
// that a pair stays shut whichever of the two came up with the newer file.
// Bridged networks are the admin's LAN, an uplink like any other; allow_from
// still opens a pair (its accepts run before every guard).
func (f *File) peerBridges(name string, mode Mode) []string {
	if mode == Bridged {
		return nil
	}
	var peers []string
	for _, other := range f.names() {
		n := f.Networks[other]
		if other == name || n.Mode == Bridged || (mode != RoutedMode && n.Mode != RoutedMode) {
			continue
		}
		peers = append(peers, n.bridge())
	}
	if _, ok := f.Networks[DefaultNetwork]; !ok && name != DefaultNetwork && mode == RoutedMode {
		// The built-in default network needs no file; it is a network too.
		peers = append(peers, DefaultBridge)
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}
