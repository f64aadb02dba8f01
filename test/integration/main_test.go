// Package integration runs kvmnet's helpers as QEMU and libvirt run them:
// as separate processes, with the tap name as the only argument, each test in
// network namespaces of its own.
package integration

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// bin holds the binaries TestMain builds, so that `go test ./...` needs no `make build` first.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := 0
	if os.Geteuid() == 0 {
		var err error
		if bin, err = build(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code = m.Run()
	if bin != "" {
		os.RemoveAll(bin)
	}
	os.Exit(code)
}

func build() (string, error) {
	dir, err := os.MkdirTemp("", "kvmnet-bin-")
	if err != nil {
		return "", err
	}
	for _, h := range []string{"ifup", "ifdown", "natup", "natdown"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "kvmnet-"+h), "../../cmd/qemu-"+h)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build kvmnet-%s: %w\n%s", h, err, out)
		}
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "kvmnet"), "../../cmd/kvmnet")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build kvmnet: %w\n%s", err, out)
	}
	return dir, nil
}

// host is a hypervisor: a namespace with a config file whose leases live in a
// temporary directory, and helpers to run kvmnet's binaries in it.
type host struct {
	*testns.NS
	t      *testing.T
	config string
	links  string // `ip -br link` before the test did anything
}

const baseConfig = "lease_dir = %q\n"

func newHost(t *testing.T, config string) *host {
	t.Helper()
	ns := testns.New(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "kvmnet.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(baseConfig, dir)+config), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &host{NS: ns, t: t, config: path}
	// A fresh namespace has no iptables tables at all, and iptables-nft makes
	// them on first use and never deletes them. Every real host has them:
	// start from there, so that "as before" compares rules, not table headers.
	ns.MustRun("iptables", "-P", "FORWARD", "ACCEPT")
	ns.MustRun("iptables", "-t", "nat", "-P", "POSTROUTING", "ACCEPT")
	h.links = h.linkList()
	return h
}

// helper runs a kvmnet helper; prog may carry "@network".
func (h *host) helper(prog, tap string, env ...string) (stderr string, err error) {
	return h.helperAs(nil, prog, tap, env...)
}

// helperAs runs a helper under wrap, a command that runs its arguments (setpriv …).
func (h *host) helperAs(wrap []string, prog, tap string, env ...string) (stderr string, err error) {
	path := filepath.Join(bin, prog)
	if base, _, ok := strings.Cut(prog, "@"); ok {
		path = filepath.Join(h.t.TempDir(), prog)
		if err := os.Symlink(filepath.Join(bin, base), path); err != nil {
			h.t.Fatal(err)
		}
	}
	argv := []string{"env", "KVMNET_CONFIG=" + h.config}
	argv = append(append(append(argv, env...), wrap...), path)
	if tap != "\x00" { // "\x00" means: no argument at all
		argv = append(argv, tap)
	}
	_, stderr, err = h.Run(argv...)
	return stderr, err
}

func (h *host) mustHelper(prog, tap string) {
	h.t.Helper()
	if stderr, err := h.helper(prog, tap); err != nil {
		h.t.Fatalf("%s %s: %v\n%s", prog, tap, err, stderr)
	}
}

// taps makes n taps named prefix0..prefixN-1, DOWN, as QEMU hands them over.
func (h *host) taps(prefix string, n int) []string {
	h.t.Helper()
	names := make([]string, n)
	var wg sync.WaitGroup
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", prefix, i)
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if _, e, err := h.Run("ip", "tuntap", "add", name, "mode", "tap"); err != nil {
				h.t.Errorf("make tap %s: %v %s", name, err, e)
			}
		}(names[i])
	}
	wg.Wait()
	return names
}

func (h *host) linkList() string {
	out := h.MustRun("ip", "-br", "link")
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			keep = append(keep, f[0]+" "+f[1])
		}
	}
	return strings.Join(keep, "\n")
}

// master returns the bridge a link is attached to, or "".
func (h *host) master(link string) string {
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

func (h *host) exists(link string) bool {
	_, _, err := h.Run("ip", "link", "show", link)
	return err == nil
}

// foreignRules installs what Docker and libvirt leave on a host: kvmnet must
// work around them and leave them exactly as they are.
func (h *host) foreignRules() {
	for _, r := range [][]string{
		{"-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE"},
		{"-N", "DOCKER-USER"},
		{"-A", "DOCKER-USER", "-j", "RETURN"},
		{"-A", "FORWARD", "-j", "DOCKER-USER"},
		{"-P", "FORWARD", "DROP"},
		{"-t", "nat", "-N", "LIBVIRT_PRT"},
		{"-t", "nat", "-A", "LIBVIRT_PRT", "-s", "192.168.122.0/24", "!", "-d", "192.168.122.0/24", "-j", "MASQUERADE"},
		{"-t", "nat", "-A", "POSTROUTING", "-j", "LIBVIRT_PRT"},
	} {
		h.MustRun(append([]string{"iptables"}, r...)...)
	}
}

func (h *host) kvmnetRules() int {
	n := 0
	for _, l := range strings.Split(h.IptablesSave(), "\n") {
		if strings.HasPrefix(l, "-A ") && strings.Contains(l, "kvmnet") {
			n++
		}
	}
	return n
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

// live lists the processes in the namespace that are not zombies: a daemon
// that exited is a zombie until init reaps it, which is not kvmnet's to hurry.
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

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}
