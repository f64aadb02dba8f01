package cli

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/kvmnet/kvmnet/internal/netsvc"
	"github.com/kvmnet/kvmnet/internal/version"
)

// Operator runs the kvmnet operator tool with args (os.Args) and returns its exit code.
func Operator(args []string) int {
	if filepath.Base(args[0]) == netsvc.ProcName {
		return netsvc.Main(args)
	}
	if len(args) < 2 {
		operatorUsage(os.Stderr)
		return ExitUsage
	}
	switch args[1] {
	case "-h", "--help", "help":
		operatorUsage(os.Stdout)
		return ExitOK
	case "--version", "version":
		fmt.Printf("kvmnet %s\n", version.Version)
		return ExitOK
	case "mac":
		if len(args) != 3 || args[2] == "" {
			fmt.Fprintln(os.Stderr, "kvmnet mac: want exactly one argument, the VM's name")
			return ExitUsage
		}
		fmt.Println(GuestMAC(args[2]))
		return ExitOK
	}
	fmt.Fprintf(os.Stderr, "kvmnet: unknown command %q (see kvmnet --help)\n", args[1])
	return ExitUsage
}

// GuestMAC derives a stable MAC for a VM from its name: QEMU's 52:54:00 prefix
// (locally administered) and three bytes of the name's hash, so that scripts
// stop giving every guest QEMU's default 52:54:00:12:34:56.
func GuestMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("kvmnet guest " + name))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}

func operatorUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: kvmnet COMMAND [ARGS]

Commands:
  mac NAME     print a stable MAC address for the VM called NAME
  version      print kvmnet's version

The QEMU helpers are /usr/libexec/kvmnet-{ifup,ifdown,natup,natdown}; see their --help.
`)
}
