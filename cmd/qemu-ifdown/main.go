// Command kvmnet-ifdown is the QEMU -netdev tap downscript= helper; see `kvmnet-ifdown --help`.
// It is a front (package warm): a warm run it does itself, any other it
// hands to the kvmnet binary.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/warm"
)

func main() { os.Exit(warm.Main(warm.IfDown, os.Args)) }
