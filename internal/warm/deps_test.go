package warm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestFrontsLinkLittle: the tap scripts' fronts start about as fast as an
// empty program only while they link almost nothing. Each package below
// costs a run its start-up (page faults, init) whether or not it is used.
func TestFrontsLinkLittle(t *testing.T) {
	ours := map[string]bool{
		"golang.org/x/sys/unix":                     true,
		"github.com/kvmnet/kvmnet/internal/warm":    true,
		"github.com/kvmnet/kvmnet/internal/selfbin": true,
		"github.com/kvmnet/kvmnet/internal/version": true,
	}
	heavy := []string{"fmt", "encoding/json", "encoding/gob", "net", "net/netip", "log", "log/syslog", "context",
		"crypto", "os/exec", "regexp", "text/template", "unique", "time/tzdata"}
	for _, cmd := range []string{"qemu-natup", "qemu-natdown", "qemu-ifup", "qemu-ifdown", "kvmnet-bridge-helper"} {
		out, err := exec.Command("go", "list", "-deps", "../../cmd/"+cmd).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", cmd, err)
		}
		for _, p := range strings.Fields(string(out)) {
			switch {
			case strings.HasPrefix(p, "github.com/kvmnet/kvmnet/cmd/"):
			case strings.Contains(p, "."): // not the standard library
				if !ours[p] {
					t.Errorf("%s links %s: a front links only %v", cmd, p, ours)
				}
			default:
				for _, h := range heavy {
					if p == h || strings.HasPrefix(p, h+"/") {
						t.Errorf("%s links %s, which a front must not", cmd, p)
					}
				}
			}
		}
	}
}
