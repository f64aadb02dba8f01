// Command kvmnet is the operator tool: see `kvmnet --help`. Started with
// argv[0] kvmnet-netsvc, it is the DHCP/DNS daemon of one network, which the
// helpers and `kvmnet up` spawn (see ctl.Start): only this binary links the
// DHCP and DNS code, so that the helpers start fast. Started with argv[0]
// kvmnet-teardown, it finishes a VM's last down in the background (deleting
// the network's bridge), holding the lock that down handed it.
package main

import (
	"os"
	"path/filepath"

	"github.com/kvmnet/kvmnet/internal/cli"
	"github.com/kvmnet/kvmnet/internal/netsvc"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case ctl.ProcName:
		os.Exit(cli.Daemon(os.Args, netsvc.MainWatching))
	case cli.TeardownProc:
		os.Exit(cli.Teardown(os.Args))
	}
	os.Exit(cli.Operator(os.Args))
}
