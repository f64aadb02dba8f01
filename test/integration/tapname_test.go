package integration

import (
	"strings"
	"testing"
)

// TestTapNamedLikeAnOption: "--help" and "--version" are valid interface
// names. When QEMU calls a helper with a tap of that name, the helper attaches
// it (and takes it off again) rather than print its help and exit 0 with the
// VM left without a network; with no link of that name they are options.
func TestTapNamedLikeAnOption(t *testing.T) {
	h := newHost(t, "", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	for _, opt := range []string{"--help", "--version", "-h"} {
		out, stderr, err := h.Run(h.Program("kvmnet-ifup"), opt)
		if err != nil || !strings.Contains(out, "kvmnet-ifup") || stderr != "" {
			t.Errorf("kvmnet-ifup %s with no such link: %v, stdout %q, stderr %q; want the option's text", opt, err, out, stderr)
		}
		h.MustRun("ip", "tuntap", "add", "dev", opt, "mode", "tap")
		for _, prog := range []string{"kvmnet-ifup", "kvmnet-ifdown"} {
			stderr, err := h.helper(prog, opt)
			if err != nil || !strings.Contains(stderr, "tap="+opt) {
				t.Errorf("%s %s with a tap of that name: %v, stderr %q; want it attached", prog, opt, err, stderr)
			}
			if want := map[string]string{"kvmnet-ifup": "br0", "kvmnet-ifdown": ""}[prog]; h.Master(opt) != want {
				t.Errorf("after %s, tap %s is on %q, want %q", prog, opt, h.Master(opt), want)
			}
		}
		h.MustRun("ip", "link", "del", "dev", opt)
	}
	h.assertClean(rules, fwd)
}
