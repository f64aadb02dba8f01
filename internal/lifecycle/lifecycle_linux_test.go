package lifecycle

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testhost"
)

// TestUpFromThreadInOtherNamespace: a caller whose thread alone entered a
// namespace (a test, a tool built on this package) gets the network, its
// rules and its DHCP/DNS daemon in that namespace, though Up and Down work
// on several goroutines; and no thread of the process is left behind in it.
func TestUpFromThreadInOtherNamespace(t *testing.T) {
	bin, err := testhost.Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	daemonBeside(t, bin)
	h := testhost.New(t, bin, "")
	h.MustRun("ip", "tuntap", "add", "vnet0", "mode", "tap")
	h.SetLinks(h.Links())
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	n, err := (&config.File{LeaseDir: t.TempDir()}).Network("default", config.NAT)
	if err != nil {
		t.Fatal(err)
	}
	err = h.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		if _, err := Up(d, n, "vnet0"); err != nil {
			return err
		}
		if pid, ok := ServicesPID(d, n.Name); !ok {
			t.Error("no DHCP/DNS daemon after Up")
		} else if daemon, self := netnsOf(t, strconv.Itoa(pid)), netnsOf(t, "thread-self"); daemon != self {
			t.Errorf("daemon in %s, want the caller's %s", daemon, self)
		}
		_, err = Down(d, n, "vnet0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h.AssertClean(rules, fwd)
}

func netnsOf(t *testing.T, proc string) string {
	link, err := os.Readlink("/proc/" + proc + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// daemonBeside links bin/kvmnet-netsvc next to the test binary, where
// findDaemonBinary looks (it never looks in PATH).
func daemonBeside(t *testing.T, bin string) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(filepath.Dir(self), daemonBinary)
	if err := os.Symlink(filepath.Join(bin, daemonBinary), link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })
}
