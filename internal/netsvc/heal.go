package netsvc

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/selfbin"
)

// startHeal runs `kvmnet-heal NETWORK` (the kvmnet binary of this
// installation, selfbin.Kvmnet) and waits for it: it puts back what the
// network's record says kvmnet set up, by the same lifecycle steps as
// `kvmnet doctor --fix` and under the network's lock, and prints each change
// it made on a line of its own. Its errors go to the daemon's log. A
// separate process, not a call: the rule engine is not this binary's.
func startHeal(ctx context.Context, network string) ([]string, error) {
	exe, err := selfbin.Kvmnet()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, exe)
	cmd.Args, cmd.Dir, cmd.Stdout, cmd.Stderr = []string{ctl.HealProc, network}, "/", &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", ctl.HealProc, network, err)
	}
	return strings.FieldsFunc(out.String(), func(r rune) bool { return r == '\n' }), nil
}
