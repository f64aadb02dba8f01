// Command kvmnet is the operator tool: see `kvmnet --help`.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() { os.Exit(cli.Operator(os.Args)) }
