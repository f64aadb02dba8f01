package cli

import (
	"fmt"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/runlog"
	"github.com/kvmnet/kvmnet/internal/state"
)

// TeardownProc is argv[0] of the kvmnet binary that a VM's last down starts
// to delete the network's links after it returned (lifecycle.FinishDown).
const TeardownProc = lifecycle.TeardownProc

// Teardown runs TeardownProc with args (os.Args: TeardownProc NETWORK) and
// returns its exit code. Its stdout and stderr are /dev/null, so a failure
// goes to the system log, and the network's record stays for the next up,
// down or gc to finish. Success logs nothing: the down's own line names what
// it left to the child ("delete bridge br0 (in the background)"), and a VM's
// down stays one line in the log.
func Teardown(args []string) int {
	code, err := teardown(args)
	if err != nil {
		log := runlog.Open(TeardownProc)
		defer log.Close()
		log.Error(err)
	}
	return code
}

func teardown(args []string) (int, error) {
	if len(args) != 2 {
		return ExitUsage, usagef("want exactly one argument, the network, got %d", len(args)-1)
	}
	if err := config.CheckNetworkName(args[1]); err != nil {
		return ExitUsage, usageError{err.Error()}
	}
	if err := needNetAdmin(); err != nil {
		return ExitUsage, err
	}
	d, err := state.Open()
	if err != nil {
		return ExitFail, err
	}
	if _, err := lifecycle.FinishDown(d, args[1]); err != nil {
		return ExitFail, fmt.Errorf("finish the last down of %s: %w", args[1], err)
	}
	return ExitOK, nil
}
