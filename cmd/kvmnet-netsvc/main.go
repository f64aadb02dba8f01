// Command kvmnet-netsvc is the DHCP/DNS daemon of one network, which an up
// (a tap script's first VM, `kvmnet up`, doctor --fix) starts with the
// network's settings and the sockets it bound (see ctl.Start), and a last
// down stops. A binary of its own, so that only it links the DHCP and DNS
// code: the kvmnet binary, which a cold up and a last down execute, starts
// faster without it.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/netsvc"
)

func main() { os.Exit(netsvc.Daemon(os.Args)) }
