// Package netsvc is the DHCPv4 server and DNS forwarder of one kvmnet NAT or
// host-only network. It runs as a detached daemon (see Main, and ctl.Start
// which starts it) so that guests get an address, a router and a resolver
// without dnsmasq. Only its own binary, kvmnet-netsvc, links it: everything
// the engine needs to start, find and stop the daemon is in package ctl.
package netsvc

import "github.com/kvmnet/kvmnet/internal/netsvc/ctl"

// The config types live in package ctl, which links no protocol code; the
// aliases keep the server's code and tests short.
type (
	Config = ctl.Config
	Host   = ctl.Host
)
