// Command kvmnet-natup is the QEMU -netdev tap script= helper; see `kvmnet-natup --help`.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() { os.Exit(cli.Helper(cli.NatUp, os.Args)) }
