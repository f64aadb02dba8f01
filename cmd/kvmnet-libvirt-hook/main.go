// Command kvmnet-libvirt-hook is libvirt's qemu hook for kvmnet networks; see `kvmnet-libvirt-hook --help`.
package main

import (
	"os"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() { os.Exit(cli.LibvirtHook(os.Args, os.Stdin)) }
