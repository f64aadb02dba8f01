package firewall

// A routed network's guards let in new connections from anywhere to its
// subnet: the upstream router's side is not known by name (any interface may
// carry it). Other kvmnet networks must stay shut all the same, so each
// network's guards first refuse traffic between its bridge and its Peers:
// a routed network lists every other network's bridge, any other network the
// routed networks' bridges. Either side's rules suffice, so a pair is shut
// whichever of the two came up with the newer configuration. Allowances
// (alw- chains, allow_from) run before every guard and still take. Package
// nat makes the same in iptables (nat/routed.go).

// peerRules reject what crosses between n's bridge and each of its Peers.
//
//	nft add rule inet kvmnet grd-NAME iifname "PEER" oifname "BRIDGE" reject
func peerRules(n Network) []*spec {
	var rs []*spec
	for _, p := range n.Peers {
		rs = append(rs,
			newSpec(true).iif(p, false).oif(n.Bridge, false).reject(),
			newSpec(true).iif(n.Bridge, false).oif(p, false).reject())
	}
	return rs
}
