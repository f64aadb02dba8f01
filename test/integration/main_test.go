// Package integration runs kvmnet's helpers as QEMU and libvirt run them:
// as separate processes, with the tap name as the only argument, each test in
// network namespaces of its own.
package integration

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// bin holds the binaries TestMain builds, so that `go test ./...` needs no `make build` first.
var bin string

func TestMain(m *testing.M) { testhost.Main(m, &bin) }

// host is a hypervisor namespace (package testhost) with the helpers' ways
// of running, and the firewall backend its configuration asks for.
type host struct {
	*testhost.Host
	fw string // "nftables", "iptables", or "" for none named (auto)
}

// newHost makes a host whose file names firewall backend fw ("": none).
func newHost(t *testing.T, fw, config string) *host {
	t.Helper()
	if fw != "" {
		config = fmt.Sprintf("firewall = %q\n", fw) + config
	}
	h := &host{testhost.New(t, bin, config), fw}
	// testhost made FORWARD and POSTROUTING, as every real host has them;
	// INPUT too, or nft's view would show the one the iptables backend makes.
	h.MustRun("iptables", "-P", "INPUT", "ACCEPT")
	return h
}

// backends are the firewall backends every lifecycle test runs against.
var backends = []string{"nftables", "iptables"}

// matrix runs test once per firewall backend, as a subtest named after it.
func matrix(t *testing.T, test func(t *testing.T, fw string)) {
	for _, fw := range backends {
		t.Run(fw, func(t *testing.T) { test(t, fw) })
	}
}

// rules is every rule of the namespace, in both views: what iptables-save
// prints and what nft prints.
type ruleset struct{ ipt, nft string }

func (h *host) rules() ruleset {
	return ruleset{h.IptablesSave(), h.MustRun("nft", "-s", "list", "ruleset")}
}

// assertClean is testhost's AssertClean, nft's view of the rules included.
func (h *host) assertClean(before ruleset, fwd string) {
	h.T.Helper()
	h.AssertClean(before.ipt, fwd)
	if got := h.MustRun("nft", "-s", "list", "ruleset"); got != before.nft {
		h.T.Errorf("nft list ruleset differs from before:\n--- before\n%s\n--- after\n%s", before.nft, got)
	}
}

// helper runs a kvmnet helper; prog may carry "@network".
func (h *host) helper(prog, tap string, env ...string) (stderr string, err error) {
	return h.helperAs(nil, prog, tap, env...)
}

// helperAs runs a helper under wrap, a command that runs its arguments (setpriv …).
func (h *host) helperAs(wrap []string, prog, tap string, env ...string) (stderr string, err error) {
	argv := []string{"env", "KVMNET_CONFIG=" + h.Config}
	argv = append(append(append(argv, env...), wrap...), h.Program(prog))
	if tap != "\x00" { // "\x00" means: no argument at all
		argv = append(argv, tap)
	}
	_, stderr, err = h.Run(argv...)
	return stderr, err
}

func (h *host) mustHelper(prog, tap string) {
	h.T.Helper()
	if stderr, err := h.helper(prog, tap); err != nil {
		h.T.Fatalf("%s %s: %v\n%s", prog, tap, err, stderr)
	}
}

// taps makes n taps named prefix0..prefixN-1, DOWN, as QEMU hands them over.
func (h *host) taps(prefix string, n int) []string {
	h.T.Helper()
	names := make([]string, n)
	var wg sync.WaitGroup
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", prefix, i)
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if _, e, err := h.Run("ip", "tuntap", "add", name, "mode", "tap"); err != nil {
				h.T.Errorf("make tap %s: %v %s", name, err, e)
			}
		}(names[i])
	}
	wg.Wait()
	return names
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

// kvmnetRules counts kvmnet's rules: iptables' and those of nft's inet kvmnet.
func (h *host) kvmnetRules() int {
	n := 0
	for _, l := range strings.Split(h.IptablesSave(), "\n") {
		if strings.HasPrefix(l, "-A ") && strings.Contains(l, "kvmnet") {
			n++
		}
	}
	if out, _, err := h.Run("nft", "list", "table", "inet", "kvmnet"); err == nil {
		n += strings.Count(out, "comment \"kvmnet:")
	}
	return n
}

// breakRules does what a firewall reload does to kvmnet's rules: some go.
func (h *host) breakRules() {
	if h.fw == "nftables" {
		h.MustRun("nft", "flush", "chain", "inet", "kvmnet", "forward")
		h.MustRun("nft", "flush", "chain", "inet", "kvmnet", "nat-default")
		return
	}
	h.MustRun("iptables", "-t", "nat", "-F")
	h.MustRun("iptables", "-D", "FORWARD", "1")
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
