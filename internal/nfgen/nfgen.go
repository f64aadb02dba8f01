// Package nfgen reads the nf_tables ruleset generation, which the rule
// engine records to prove rules unchanged and the rule watchers compare to
// learn whether anything changed before they subscribed. A base package: it
// links only netlink.
package nfgen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// msgGetGen and msgNewGen are the nfnetlink message types of the nf_tables
// "get generation" request and its reply: (NFNL_SUBSYS_NFTABLES<<8)|NFT_MSG_*GEN.
const (
	msgGetGen = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN
	msgNewGen = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN
)

// errNoGenID reports a GETGEN reply without an NFTA_GEN_ID attribute.
var errNoGenID = errors.New("reply has no NFTA_GEN_ID")

// Generation returns the nf_tables ruleset generation id of the calling
// thread's network namespace (`nft monitor` prints it as "# new generation N").
// It equals `nft`'s NFT_MSG_GETGEN request: one netlink round trip, well under
// 0.1 ms, against ~3 ms for an exec of iptables-save. The kernel bumps the id
// by one on every committed nf_tables transaction, whoever makes it, so an
// unchanged id proves that no rule of any table changed in between. Reading
// rules (iptables-save, iptables -S, -C) does not bump it; measured here, one
// iptables-restore bumps it once per table section it commits.
//
// It says nothing about legacy x_tables tables.
func Generation() (uint32, error) {
	req := nl.NewNetlinkRequest(msgGetGen, 0)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: unix.NFNETLINK_V0})
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, msgNewGen)
	if err != nil {
		return 0, fmt.Errorf("nf_tables getgen: %w", err)
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofNfgenmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofNfgenmsg:])
		if err != nil {
			return 0, fmt.Errorf("nf_tables getgen: %w", err)
		}
		for _, a := range attrs {
			if a.Attr.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == unix.NFTA_GEN_ID && len(a.Value) >= 4 {
				return binary.BigEndian.Uint32(a.Value), nil
			}
		}
	}
	return 0, fmt.Errorf("nf_tables getgen: %w", errNoGenID)
}
