package cli

import (
	"fmt"
	"os"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// HealProc is argv[0] of the kvmnet binary that a network's DHCP/DNS daemon
// or rule watcher runs when another program changed the firewall.
const HealProc = ctl.HealProc

// Heal runs HealProc with args (os.Args: HealProc NETWORK) and returns its
// exit code: it heals the network (ops.Host.Heal) and prints each change it
// made on a line of its own on stdout, for the watcher's log line; an error
// goes to stderr, which is the watcher's log.
func Heal(args []string) int {
	code, err := heal(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s\n", HealProc, err)
	}
	return code
}

func heal(args []string) (int, error) {
	if len(args) != 2 {
		return ExitUsage, usagef("want exactly one argument, the network, got %d", len(args)-1)
	}
	if err := config.CheckNetworkName(args[1]); err != nil {
		return ExitUsage, usageError{err.Error()}
	}
	h, err := adminHost()
	if err != nil {
		return ExitUsage, err
	}
	changes, err := h.Heal(args[1])
	for _, c := range changes {
		fmt.Println(c)
	}
	if err != nil {
		return ExitFail, fmt.Errorf("heal %s: %w", args[1], err)
	}
	return ExitOK, nil
}
