package integration

import (
	"strings"
	"testing"
)

// TestWarmIsolatedAdminBridge: an isolated network on an empty bridge an
// admin made is warm like one on kvmnet's own bridge: the fronts take a VM's
// up and a down that is not the last themselves, whether kvmnet quieted the
// bridge (arp_ignore, disable_ipv6: its record then holds what it set) or
// the admin had (the front reads the two settings again, as the engine's up
// does). A setting put back, or another bridge of that name, sends the up to
// the engine, which quiets or adopts it as it always did.
func TestWarmIsolatedAdminBridge(t *testing.T) {
	for _, c := range []struct {
		name     string
		preQuiet bool // the admin set arp_ignore=8 and disable_ipv6=1 first
	}{{"kvmnet quiets it", false}, {"the admin quieted it", true}} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			h := newHost(t, "nftables", "")
			rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
			h.MustRun("ip", "link", "add", "br0", "type", "bridge")
			if c.preQuiet {
				h.MustRun("sysctl", "-qw", "net.ipv4.conf.br0.arp_ignore=8", "net.ipv6.conf.br0.disable_ipv6=1")
			}
			links := h.Links()
			taps := h.taps("vnet", 3)
			h.mustHelper("kvmnet-ifup", taps[0])
			for range 2 {
				h.warmIf("kvmnet-ifup", taps[1], "up", "attach "+taps[1]+" to br0")
				h.warmIf("kvmnet-ifdown", taps[1], "down", "detach "+taps[1]+" from br0")
			}
			if c.preQuiet {
				// The admin turns ARP back on: the engine quiets the bridge
				// again (and now records what it found, to put it back).
				h.MustRun("sysctl", "-qw", "net.ipv4.conf.br0.arp_ignore=0")
				h.engineRun("kvmnet-ifup", taps[1])
				if got := h.Sysctl("net.ipv4.conf.br0.arp_ignore"); got != "8" {
					t.Errorf("arp_ignore = %s after the engine's up, want 8", got)
				}
				h.warmIf("kvmnet-ifdown", taps[1], "down", "detach "+taps[1]+" from br0")
			}
			// Another bridge of that name, empty (kernel defaults): the same
			// name, another index. The front does not take it for the
			// network's; the engine adopts it, and its last down puts back
			// the defaults it found.
			h.MustRun("ip", "link", "del", "br0")
			h.MustRun("ip", "link", "add", "br0", "type", "bridge")
			h.engineRun("kvmnet-ifup", taps[2])
			h.mustHelper("kvmnet-ifdown", taps[2])
			h.Settle()
			if !h.Exists("br0") {
				t.Fatal("the last down deleted the admin's bridge")
			}
			if a, d := h.Sysctl("net.ipv4.conf.br0.arp_ignore"), h.Sysctl("net.ipv6.conf.br0.disable_ipv6"); a != "0" || d != "0" {
				t.Errorf("arp_ignore=%s disable_ipv6=%s after the last down, want 0 and 0 as found", a, d)
			}
			h.MustRun("ip", "link", "del", "br0")
			h.MustRun("ip", "link", "add", "br0", "type", "bridge")
			if c.preQuiet {
				h.MustRun("sysctl", "-qw", "net.ipv4.conf.br0.arp_ignore=8", "net.ipv6.conf.br0.disable_ipv6=1")
			}
			for _, tap := range taps {
				h.MustRun("ip", "link", "del", tap)
			}
			h.SetLinks(links)
			h.assertClean(rules, fwd)
		})
	}
}

// warmIf runs an isolated network's script (the default network's) that the
// front must take itself, and checks that it did: one line naming the
// change, and the hot file the engine would have rewritten unchanged.
func (h *host) warmIf(prog, tap, verb, change string) {
	h.T.Helper()
	hot, hold := h.hotInode()
	if hot == 0 {
		h.T.Fatal("no hot file: the network is not warm")
	}
	defer hold.Close()
	stderr, err := h.helper(prog, tap)
	if err != nil {
		h.T.Fatalf("%s %s: %v\n%s", prog, tap, err, stderr)
	}
	want := prog + ": " + verb + " tap=" + tap + " network=default bridge=br0 mode=isolated changes=\"" + change + "\" took="
	if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
		h.T.Errorf("stderr = %q, want one line starting %q", stderr, want)
	}
	if h.hotIno() != hot {
		h.T.Errorf("%s %s went to the engine (it rewrote the hot file)", prog, tap)
	}
}
