// Command kvmnet is the operator tool: see `kvmnet --help`. Started with
// argv[0] kvmnet-teardown, it finishes a VM's last down in the background
// (deleting the network's bridge), holding the lock that down handed it.
// Started as kvmnet-natup (or kvmnet-natup@NETWORK, and the other three tap
// scripts), it is that helper's engine: the helper's front (package warm)
// execs it with its own argv for every run it cannot prove warm. Started
// with argv[0] kvmnet-bridge-helper, it is the bridge helper's engine, which
// its setuid front execs with the caller's ids for every run it does not
// take. Started as kvmnet-heal NETWORK, it heals the network (its rules
// above all) for the network's DHCP/DNS daemon or rule watcher, which saw
// another program change the firewall. The DHCP/DNS daemon is a binary of
// its own (cmd/kvmnet-netsvc).
package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/kvmnet/kvmnet/internal/cli"
)

// helpers are the tap scripts whose engine this binary is, by argv[0].
var helpers = map[string]cli.Verb{
	"kvmnet-ifup": cli.IfUp, "kvmnet-ifdown": cli.IfDown,
	"kvmnet-natup": cli.NatUp, "kvmnet-natdown": cli.NatDown,
}

func main() {
	base := filepath.Base(os.Args[0])
	switch base {
	case cli.TeardownProc:
		os.Exit(cli.Teardown(os.Args))
	case cli.BridgeHelperName:
		os.Exit(cli.BridgeHelper(os.Args))
	case cli.HealProc:
		os.Exit(cli.Heal(os.Args))
	}
	if v, ok := helpers[strings.SplitN(base, "@", 2)[0]]; ok {
		os.Exit(cli.Helper(v, os.Args))
	}
	os.Exit(cli.Operator(os.Args))
}
