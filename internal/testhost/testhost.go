// Package testhost is the hypervisor the process-level tests run kvmnet on: a
// throwaway network namespace (package testns) with a configuration file of
// its own, kvmnet's binaries built once per test binary, and the checks that
// a namespace is left as it was found.
package testhost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// Binaries are the programs Build makes: the four helpers, the operator tool
// (which is also their engine), the DHCP/DNS daemon the helpers start, the
// libvirt hook and the bridge helper.
var Binaries = map[string]string{
	"kvmnet-ifup": "qemu-ifup", "kvmnet-ifdown": "qemu-ifdown",
	"kvmnet-natup": "qemu-natup", "kvmnet-natdown": "qemu-natdown",
	"kvmnet": "kvmnet", "kvmnet-netsvc": "kvmnet-netsvc", "kvmnet-libvirt-hook": "kvmnet-libvirt-hook",
	"kvmnet-bridge-helper": "kvmnet-bridge-helper",
}

// Build builds every binary, static and stripped as `make build` does, into a new temporary
// directory, so that `go test ./...` needs no `make build` first. The caller
// removes the directory.
func Build() (string, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	dir, err := os.MkdirTemp("", "kvmnet-bin-")
	if err != nil {
		return "", err
	}
	for out, cmdDir := range Binaries {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, out), "./cmd/"+cmdDir)
		cmd.Dir = strings.TrimSpace(string(root))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("build %s: %w\n%s", out, err, b)
		}
	}
	return dir, nil
}

// Main is the TestMain of a package that runs the binaries: as root it builds
// them into *bin (as anyone else, every test skips: testns needs root), runs
// the tests, removes the binaries and exits with the tests' status.
func Main(m *testing.M, bin *string) {
	if os.Geteuid() == 0 {
		dir, err := Build()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		*bin = dir
	}
	code := m.Run()
	if *bin != "" {
		os.RemoveAll(*bin)
	}
	os.Exit(code)
}

// Host is a hypervisor namespace with its own configuration file, whose
// DHCP leases live in a temporary directory.
type Host struct {
	*testns.NS
	T      testing.TB
	Bin    string // where Build put the binaries
	Config string // path of the configuration file, for KVMNET_CONFIG
	links  string // `ip -br link` before the test did anything
}

// New makes a host whose configuration file holds config (TOML; a lease_dir
// is prepended).
func New(t testing.TB, bin, config string) *Host {
	t.Helper()
	// The directory first: cleanups run last first, so the namespace's (which
	// kills what runs in it) comes before the directory's removal, which a
	// daemon still writing its lease file on its way out would fail.
	dir := t.TempDir()
	ns := testns.New(t)
	path := filepath.Join(dir, "kvmnet.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("lease_dir = %q\n", dir)+config), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Host{NS: ns, T: t, Bin: bin, Config: path}
	// A fresh namespace has no iptables tables at all, and iptables-nft makes
	// them on first use and never deletes them. Every real host has them:
	// start from there, so that "as before" compares rules, not table headers.
	ns.MustRun("iptables", "-P", "FORWARD", "ACCEPT")
	ns.MustRun("iptables", "-t", "nat", "-P", "POSTROUTING", "ACCEPT")
	h.links = h.Links()
	return h
}

// Program returns the path to run prog by; "kvmnet-natup@lab" is made as a
// symlink to kvmnet-natup, the way a network is picked by name.
func (h *Host) Program(prog string) string {
	base, _, named := strings.Cut(prog, "@")
	if !named {
		return filepath.Join(h.Bin, prog)
	}
	path := filepath.Join(h.T.TempDir(), prog)
	if err := os.Symlink(filepath.Join(h.Bin, base), path); err != nil {
		h.T.Fatal(err)
	}
	return path
}

// Links lists the namespace's links with their state.
func (h *Host) Links() string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(h.MustRun("ip", "-br", "link")), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			keep = append(keep, f[0]+" "+f[1])
		}
	}
	return strings.Join(keep, "\n")
}

// SetLinks makes links the state AssertClean compares with, for a test that
// made links of its own before taking its "before".
func (h *Host) SetLinks(links string) { h.links = links }

// Master returns the bridge a link is attached to, "" when none, "(gone)" when no such link.
func (h *Host) Master(link string) string {
	out, _, err := h.Run("ip", "-o", "link", "show", link)
	if err != nil {
		return "(gone)"
	}
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "master" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// Exists reports whether the link exists.
func (h *Host) Exists(link string) bool {
	_, _, err := h.Run("ip", "link", "show", link)
	return err == nil
}

// AssertClean checks that the namespace is as New found it: rules, links,
// ip_forward, and no process left running in it.
// It waits for a last down's background teardown first (Settle).
func (h *Host) AssertClean(rulesBefore, fwdBefore string) {
	h.T.Helper()
	h.Settle()
	if got := h.IptablesSave(); got != rulesBefore {
		h.T.Errorf("iptables-save differs from before:\n--- before\n%s\n--- after\n%s", rulesBefore, got)
	}
	if got := h.Links(); got != h.links {
		h.T.Errorf("links differ from before:\n--- before\n%s\n--- after\n%s", h.links, got)
	}
	if got := h.Sysctl("net.ipv4.ip_forward"); got != fwdBefore {
		h.T.Errorf("ip_forward = %s, was %s", got, fwdBefore)
	}
	if left := h.stateLeft(); len(left) > 0 {
		h.T.Errorf("state left in /run/kvmnet besides the locks: %s", strings.Join(left, " "))
	}
	if pids := h.lingering(); len(pids) > 0 {
		ps, _ := exec.Command("ps", "-o", "pid,args", "-p", strings.Join(pids, ",")).CombinedOutput()
		h.T.Errorf("processes left in the namespace:\n%s", ps)
	}
}

// lingering is Live, given a moment: a teardown child has unlocked the
// network once its work is done, but on a loaded machine it may not have
// exited yet when Settle returns. One still alive after 3 s is left behind.
func (h *Host) lingering() []string {
	pids := h.Live()
	for deadline := time.Now().Add(3 * time.Second); len(pids) > 0 && time.Now().Before(deadline); pids = h.Live() {
		time.Sleep(20 * time.Millisecond)
	}
	return pids
}

// stateLeft lists the files of kvmnet's state directory for the namespace
// other than its locks.
func (h *Host) stateLeft() []string {
	var left []string
	err := h.Do(func() error {
		_, names, err := stateFiles()
		for _, name := range names {
			if !strings.HasSuffix(name, ".lock") {
				left = append(left, name)
			}
		}
		return err
	})
	if err != nil {
		h.T.Errorf("read kvmnet's state: %v", err)
	}
	return left
}

// Live lists the processes in the namespace that are not zombies: a daemon
// that exited is a zombie until init reaps it, which is not kvmnet's to hurry.
// Nor is a process that is exiting, whose memory is gone (an empty
// /proc/PID/cmdline): a teardown child frees its memory before its files, so
// once its lock is free (Settle), it no longer counts.
func (h *Host) Live() []string {
	var pids []string
	for _, p := range strings.Fields(h.MustRun("ip", "netns", "pids", h.Name)) {
		state, ok := ProcState(p)
		if !ok {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + p + "/cmdline")
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if state != 'Z' {
			pids = append(pids, p)
		}
	}
	return pids
}

// ProcState returns the state of process pid as /proc/PID/stat gives it
// (R, S, D, Z, X, …), and false when there is no such process.
func ProcState(pid string) (byte, bool) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	// The state follows the command name, in parentheses that may hold any byte.
	i := strings.LastIndexByte(string(stat), ')')
	if err != nil || i < 0 || i+2 >= len(stat) {
		return 0, false
	}
	return stat[i+2], true
}
