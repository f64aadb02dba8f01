// Command kvmnet-ifdown is the QEMU -netdev tap downscript= helper; see `kvmnet-ifdown --help`.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() { os.Exit(cli.Helper(cli.IfDown, os.Args)) }
