// Command kvmnet-ifup is the QEMU -netdev tap script= helper; see `kvmnet-ifup --help`.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() { os.Exit(cli.Helper(cli.IfUp, os.Args)) }
