// Command kvmnet-natdown is the QEMU -netdev tap downscript= helper; see `kvmnet-natdown --help`.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() { os.Exit(cli.Helper(cli.NatDown, os.Args)) }
