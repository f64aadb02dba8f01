// Command kvmnet-bridge-helper is QEMU's -netdev bridge helper for VMs of
// ordinary users, installed setuid root; see `kvmnet-bridge-helper --help`.
// It is a front (package warm): a run on a network that is up and whole, by
// a caller it knows to be allowed, it does itself; any other it hands to
// the kvmnet binary.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/warm"
)

func main() { os.Exit(warm.BridgeHelper(os.Args)) }
