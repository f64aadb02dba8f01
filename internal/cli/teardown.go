package cli

import (
	"strings"
	"time"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/runlog"
	"github.com/kvmnet/kvmnet/internal/state"
)

// TeardownProc is argv[0] of the kvmnet binary that a VM's last down starts
// to delete the network's links after it returned (lifecycle.FinishDown).
const TeardownProc = lifecycle.TeardownProc

// Teardown runs TeardownProc with args (os.Args: TeardownProc NETWORK) and
// returns its exit code. Its stdout and stderr are /dev/null, so what it did
// or what failed goes to the system log; a failure leaves the network's
// record for the next up, down or gc to finish.
func Teardown(args []string) int {
	log := runlog.Open(TeardownProc)
	defer log.Close()
	start := time.Now()
	if len(args) != 2 {
		log.Error(usagef("want exactly one argument, the network, got %d", len(args)-1))
		return ExitUsage
	}
	name := args[1]
	if err := config.CheckNetworkName(name); err != nil {
		log.Error(usageError{err.Error()})
		return ExitUsage
	}
	if err := needNetAdmin(); err != nil {
		log.Error(err)
		return ExitUsage
	}
	d, err := state.Open()
	if err == nil {
		var res lifecycle.Result
		if res, err = lifecycle.FinishDown(d, name); err == nil {
			log.Info("teardown", "network", name, "changes", strings.Join(res.Changes, ","), "took", time.Since(start).Round(10*time.Microsecond).String())
			return ExitOK
		}
	}
	log.Error(err)
	return ExitFail
}
