// Package operator runs the operator tool `kvmnet` as an admin does, next to
// the helpers as QEMU runs them: as separate processes, each test in network
// namespaces of its own.
package operator

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// bin holds the binaries TestMain builds, so that `go test ./...` needs no `make build` first.
var bin string

func TestMain(m *testing.M) {
	var err error
	if bin, err = build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(bin)
	os.Exit(code)
}

func build() (string, error) {
	dir, err := os.MkdirTemp("", "kvmnet-op-bin-")
	if err != nil {
		return "", err
	}
	for out, pkg := range map[string]string{
		"kvmnet-natup": "qemu-natup", "kvmnet-natdown": "qemu-natdown", "kvmnet-ifup": "qemu-ifup", "kvmnet": "kvmnet",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), "../../cmd/"+pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s: %w\n%s", out, err, b)
		}
	}
	return dir, nil
}

// host is a hypervisor: a namespace with a config file whose leases live in a
// temporary directory.
type host struct {
	*testns.NS
	t      *testing.T
	config string
	links  string // `ip -br link` before the test did anything
}

func newHost(t *testing.T, config string) *host {
	t.Helper()
	ns := testns.New(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "kvmnet.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("lease_dir = %q\n", dir)+config), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &host{NS: ns, t: t, config: path}
	// Every real host has the filter and nat tables; a fresh namespace gets
	// them on first use and keeps them, so make them before "before".
	ns.MustRun("iptables", "-P", "FORWARD", "ACCEPT")
	ns.MustRun("iptables", "-t", "nat", "-P", "POSTROUTING", "ACCEPT")
	h.links = h.linkList()
	return h
}

// kvmnet runs the operator tool in the namespace; env adds variables.
func (h *host) kvmnet(env []string, args ...string) (stdout, stderr string, code int) {
	argv := append([]string{"env", "KVMNET_CONFIG=" + h.config}, env...)
	argv = append(append(argv, filepath.Join(bin, "kvmnet")), args...)
	stdout, stderr, err := h.Run(argv...)
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout, stderr, ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("kvmnet %s: %v", strings.Join(args, " "), err)
	}
	return stdout, stderr, 0
}

// must runs the operator tool and fails the test unless it exits 0.
func (h *host) must(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.kvmnet(nil, args...)
	if code != 0 {
		h.t.Fatalf("kvmnet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// helper runs a QEMU helper (prog may carry "@network") for tap.
func (h *host) helper(prog, tap string) {
	h.t.Helper()
	path := filepath.Join(bin, prog)
	if base, _, ok := strings.Cut(prog, "@"); ok {
		path = filepath.Join(h.t.TempDir(), prog)
		if err := os.Symlink(filepath.Join(bin, base), path); err != nil {
			h.t.Fatal(err)
		}
	}
	if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.config, path, tap); err != nil {
		h.t.Fatalf("%s %s: %v\n%s", prog, tap, err, e)
	}
}

// taps makes taps with the given names, DOWN, as QEMU hands them over.
func (h *host) taps(names ...string) {
	h.t.Helper()
	for _, n := range names {
		h.MustRun("ip", "tuntap", "add", n, "mode", "tap")
	}
}

// status returns `kvmnet status --json` decoded.
func (h *host) status(args ...string) statusJSON {
	h.t.Helper()
	out := h.must(append([]string{"status", "--json"}, args...)...)
	return decodeStatus(h.t, out)
}

func (h *host) linkList() string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(h.MustRun("ip", "-br", "link")), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			keep = append(keep, f[0]+" "+f[1])
		}
	}
	return strings.Join(keep, "\n")
}

func (h *host) master(link string) string {
	out, _, err := h.Run("ip", "-j", "link", "show", link)
	if err != nil {
		return "(gone)"
	}
	var l []struct {
		Master string `json:"master"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l) != 1 {
		h.t.Fatalf("ip -j link show %s: %q", link, out)
	}
	return l[0].Master
}

func (h *host) exists(link string) bool {
	_, _, err := h.Run("ip", "link", "show", link)
	return err == nil
}

// assertClean checks that the namespace is as newHost found it.
func (h *host) assertClean(rulesBefore, fwdBefore string) {
	h.t.Helper()
	if got := h.IptablesSave(); got != rulesBefore {
		h.t.Errorf("iptables-save differs from before:\n--- before\n%s\n--- after\n%s", rulesBefore, got)
	}
	if got := h.linkList(); got != h.links {
		h.t.Errorf("links differ from before:\n--- before\n%s\n--- after\n%s", h.links, got)
	}
	if got := h.Sysctl("net.ipv4.ip_forward"); got != fwdBefore {
		h.t.Errorf("ip_forward = %s, was %s", got, fwdBefore)
	}
	if pids := h.live(); len(pids) > 0 {
		ps, _ := exec.Command("ps", "-o", "pid,args", "-p", strings.Join(pids, ",")).CombinedOutput()
		h.t.Errorf("processes left in the namespace:\n%s", ps)
	}
}

// live lists the processes in the namespace that are not zombies.
func (h *host) live() []string {
	var pids []string
	for _, p := range strings.Fields(h.MustRun("ip", "netns", "pids", h.Name)) {
		stat, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && !strings.HasPrefix(string(stat[i:]), ") Z") {
			pids = append(pids, p)
		}
	}
	return pids
}
