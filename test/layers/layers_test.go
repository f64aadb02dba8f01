// Package layers checks the floors of /work/shared/design.md against the
// imports the code has: a package imports only what is below it, engines do
// not import one another, and no production code links a test helper.
package layers

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/kvmnet/kvmnet/"

// floor of each package of ours, by path below the module; cmd/* is floor 1.
// An import goes to a higher number, never to the same one or a lower one,
// but for the pairs in sideways.
var floor = map[string]int{
	"internal/warm": 2, "internal/cli": 2,
	"internal/ops": 3, "internal/lifecycle": 3,
	"internal/firewall": 4, "internal/nat": 4, "internal/bridge": 4, "internal/state": 4,
	"internal/netsvc": 4, "internal/netsvc/ctl": 4, "internal/config": 4,
	"internal/firewalld": 4, "internal/resolved": 4,
	"internal/portguard": 5, "internal/nfgen": 5, "internal/vtepset": 5,
	"internal/runlog": 5, "internal/version": 5, "internal/selfbin": 5, "internal/safefile": 5,
	"internal/nslock": 5,
}

// sideways are the imports the design allows within a floor or upwards,
// each with its reason.
var sideways = map[[2]string]string{
	{"internal/cli", "internal/warm"}:          "the engine writes the bridge ACL file whose format warm owns",
	{"internal/lifecycle", "internal/warm"}:    "lifecycle writes the hot file whose format warm owns",
	{"internal/ops", "internal/lifecycle"}:     "ops runs the up and down steps",
	{"internal/firewall", "internal/nat"}:      "nat is the firewall's iptables runner",
	{"internal/netsvc", "internal/netsvc/ctl"}: "ctl is the daemon's part the engine links",
	{"internal/safefile", "internal/selfbin"}:  "safefile.Executable is selfbin.Check",
}

// testHelpers are imported by tests only.
var testHelpers = []string{"internal/testns", "internal/testhost", "internal/testproc"}

type pkg struct {
	ImportPath string
	Imports    []string
}

// TestLayers: every production import of every package of ours keeps the
// floors; a new package must be given its floor here.
func TestLayers(t *testing.T) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "../../cmd/...", "../../internal/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		from := strings.TrimPrefix(p.ImportPath, mod)
		if isTestHelper(from) {
			continue
		}
		fromFloor, ok := floorOf(from)
		if !ok {
			t.Errorf("%s has no floor: give it one in floor (see design.md)", from)
			continue
		}
		for _, imp := range p.Imports {
			to, ours := strings.CutPrefix(imp, mod)
			if !ours {
				continue
			}
			checked++
			if isTestHelper(to) {
				t.Errorf("%s imports the test helper %s", from, to)
				continue
			}
			toFloor, ok := floorOf(to)
			if !ok {
				t.Errorf("%s imports %s, which has no floor", from, to)
				continue
			}
			if toFloor <= fromFloor && sideways[[2]string{from, to}] == "" {
				t.Errorf("%s (floor %d) imports %s (floor %d): a package imports only what is below it", from, fromFloor, to, toFloor)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no imports of ours checked: go list found nothing")
	}
}

func floorOf(p string) (int, bool) {
	if strings.HasPrefix(p, "cmd/") {
		return 1, true
	}
	f, ok := floor[p]
	return f, ok
}

func isTestHelper(p string) bool {
	for _, h := range testHelpers {
		if p == h {
			return true
		}
	}
	return false
}
