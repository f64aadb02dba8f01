package ctl

import (
	"slices"
	"strings"
	"testing"
)

// TestDaemonEnvCapsProcs: the daemon's environment has one GOMAXPROCS, at
// most DaemonProcs, whatever the caller's was, and the rest of the caller's.
func TestDaemonEnvCapsProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "64")
	t.Setenv("KVMNET_TEST_KEPT", "yes")
	env := DaemonEnv()
	var procs []string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
			procs = append(procs, v)
		}
	}
	if len(procs) != 1 || procs[0] != "1" {
		t.Errorf("GOMAXPROCS in the daemon's environment: %q, want one, at most %d", procs, DaemonProcs)
	}
	if !slices.Contains(env, "KVMNET_TEST_KEPT=yes") {
		t.Error("the caller's environment was not passed on")
	}
}
