package nat

// A routed network's guards let in new connections from anywhere to its
// subnet: the upstream router's side is not known by name (any interface may
// carry it). Other kvmnet networks must stay shut all the same, so each
// network's guards first refuse traffic between its bridge and its Peers:
// a routed network lists every other network's bridge, any other network the
// routed networks' bridges. Either side's rules suffice, so a pair is shut
// whichever of the two came up with the newer configuration. Allowances
// (KVMNET-ALW chains, allow_from) run before every guard and still take.

// peerRules refuse what crosses between n's bridge and each of its Peers.
func peerRules(n Network) [][]string {
	var rs [][]string
	for _, p := range n.Peers {
		rs = append(rs,
			rule(n, []string{"-i", p, "-o", n.Bridge}, rejectOf(n)...),
			rule(n, []string{"-i", n.Bridge, "-o", p}, rejectOf(n)...))
	}
	return rs
}
