// Command kvmnet-bridge-helper is QEMU's -netdev bridge helper for VMs of
// ordinary users, installed setuid root; see `kvmnet-bridge-helper --help`.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() { os.Exit(cli.BridgeHelper(os.Args)) }
