package lifecycle

import "github.com/kvmnet/kvmnet/internal/state"

// Vacated is Reclaim for one network whose last tap was deleted, which its
// DHCP/DNS daemon noticed (it runs `kvmnet gc NETWORK`): a VM killed, or a
// bridge helper's VM ended. A network a libvirt domain is recorded on is left
// to the libvirt hook, whatever its taps: libvirt deletes a domain's taps
// before it runs the hook's stopped and release, and release is where a
// domain's network goes (an interface unplugged from a running domain must
// not take the network from it either).
func Vacated(d state.Dir, name string) (Result, bool, error) {
	domains, err := d.AnyDomain(name, func(state.Domain) bool { return true })
	if err != nil || domains {
		return Result{}, false, err
	}
	return Reclaim(d, name)
}
