// Package operator runs the operator tool `kvmnet` as an admin does, next to
// the helpers as QEMU runs them: as separate processes, each test in network
// namespaces of its own.
package operator

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
)

// bin holds the binaries TestMain builds, so that `go test ./...` needs no `make build` first.
var bin string

func TestMain(m *testing.M) { testhost.Main(m, &bin) }

// host is a hypervisor namespace (package testhost) with the operator tool's ways of running.
type host struct{ *testhost.Host }

// newHost makes a host on the iptables backend: most tests here provoke
// findings with the iptables programs (newHostFW picks another).
func newHost(t *testing.T, config string) *host {
	t.Helper()
	return newHostFW(t, "iptables", config)
}

// newHostFW makes a host whose file names firewall backend fw.
func newHostFW(t *testing.T, fw, config string) *host {
	t.Helper()
	return &host{testhost.New(t, bin, fmt.Sprintf("firewall = %q\n", fw)+config)}
}

// kvmnet runs the operator tool in the namespace; env adds variables.
func (h *host) kvmnet(env []string, args ...string) (stdout, stderr string, code int) {
	argv := append([]string{"env", "KVMNET_CONFIG=" + h.Config}, env...)
	argv = append(append(argv, filepath.Join(bin, "kvmnet")), args...)
	stdout, stderr, err := h.Run(argv...)
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout, stderr, ee.ExitCode()
	} else if err != nil {
		h.T.Fatalf("kvmnet %s: %v", strings.Join(args, " "), err)
	}
	return stdout, stderr, 0
}

// must runs the operator tool and fails the test unless it exits 0.
func (h *host) must(args ...string) string {
	h.T.Helper()
	out, errOut, code := h.kvmnet(nil, args...)
	if code != 0 {
		h.T.Fatalf("kvmnet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// helper runs a QEMU helper (prog may carry "@network") for tap.
func (h *host) helper(prog, tap string) {
	h.T.Helper()
	if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, h.Program(prog), tap); err != nil {
		h.T.Fatalf("%s %s: %v\n%s", prog, tap, err, e)
	}
}

// taps makes taps with the given names, DOWN, as QEMU hands them over.
func (h *host) taps(names ...string) {
	h.T.Helper()
	for _, n := range names {
		h.MustRun("ip", "tuntap", "add", n, "mode", "tap")
	}
}

// status returns `kvmnet status --json` decoded.
func (h *host) status(args ...string) statusJSON {
	h.T.Helper()
	out := h.must(append([]string{"status", "--json"}, args...)...)
	return decodeStatus(h.T, out)
}

// exitCode is err's exit status: 0 for nil; a failure to run at all fails t.
func exitCode(t testing.TB, err error) int {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}
