// Command kvmnet-natdown is the QEMU -netdev tap downscript= helper; see `kvmnet-natdown --help`.
// It is a front (package warm): a warm run it does itself, any other it
// hands to the kvmnet binary.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/warm"
)

func main() { os.Exit(warm.Main(warm.NatDown, os.Args)) }
