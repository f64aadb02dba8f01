package config_test

import (
	"strconv"
	"testing"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestMTULimitsAreTheKernels: every MTU the file accepts, the kernel takes
// for a bridge and for the taps attached to it, and one more it refuses.
func TestMTULimitsAreTheKernels(t *testing.T) {
	ns := testns.New(t)
	ns.MustRun("ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun("ip", "tuntap", "add", "vnet0", "mode", "tap")
	for _, mtu := range []int{config.MinMTU, config.MaxMTU} {
		for _, link := range []string{"br0", "vnet0"} {
			ns.MustRun("ip", "link", "set", link, "mtu", strconv.Itoa(mtu))
		}
	}
	if _, _, err := ns.Run("ip", "link", "set", "vnet0", "mtu", strconv.Itoa(config.MaxMTU+1)); err == nil {
		t.Errorf("a tap takes mtu %d: MaxMTU is not the kernel's limit", config.MaxMTU+1)
	}
}
