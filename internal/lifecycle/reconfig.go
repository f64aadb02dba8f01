package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/nat"
	"github.com/kvmnet/kvmnet/internal/state"
)

// ErrConfigStale is returned by Up, before it changes anything, for a network
// resolved from a cache that left its forwards out (config.Net.Elided) when
// the network runs another configuration: the caller resolves the file again
// and calls Up with the whole network.
var ErrConfigStale = errors.New("configuration changed since it was cached")

// Reload applies network n's configuration, as the file now says it, to the
// network while it is up, without touching its VMs: forwards added, changed
// and removed, the DHCP/DNS daemon restarted with its new static hosts and
// names (its leases are in its lease file, which it reads back). What cannot
// change under running VMs (bridge, subnet, mode) is refused. A network that
// is not up is left alone (ok false).
func Reload(d state.Dir, n config.Net) (res Result, ok bool, err error) {
	rec, ok, err := d.Load(n.Name)
	if err != nil || !ok {
		return Result{}, false, err
	}
	var fixed []string
	if rec.Bridge != n.Bridge {
		fixed = append(fixed, fmt.Sprintf("bridge %s -> %s", rec.Bridge, n.Bridge))
	}
	if rec.Gateway != n.Gateway {
		fixed = append(fixed, fmt.Sprintf("address %s -> %s", gwString(rec.Gateway), gwString(n.Gateway)))
	}
	if rec.Mode != string(n.Mode) {
		fixed = append(fixed, fmt.Sprintf("mode %s -> %s", rec.Mode, n.Mode))
	}
	if len(fixed) > 0 {
		return Result{}, true, fmt.Errorf("network %s: %s: %w: the bridge, subnet and mode cannot change while it is up (take its VMs down or run `kvmnet down %s`, then up again)",
			n.Name, strings.Join(fixed, ", "), ErrConflict, n.Name)
	}
	res, err = up(d, n, "", reloadUp)
	return res, true, err
}

// recordForwards is n's forwards as the record keeps them.
func recordForwards(n config.Net) []state.Forward {
	var fs []state.Forward
	for _, f := range n.Forwards {
		fs = append(fs, state.Forward{Proto: f.Proto, HostIP: f.HostIP, First: f.Ports.First, Last: f.Ports.Last, Guest: f.Guest, GuestPort: f.ToFirst})
	}
	return fs
}

// natForwards is recorded forwards as the rule engines take them.
func natForwards(forwards []state.Forward) []nat.PortForward {
	var fs []nat.PortForward
	for _, f := range forwards {
		fs = append(fs, nat.PortForward{Proto: f.Proto, HostIP: f.HostIP, First: f.First, Last: f.Last, Guest: f.Guest, GuestPort: f.GuestPort})
	}
	return fs
}

// localnetPath is the bridge's route_localnet sysctl.
func localnetPath(br string) string {
	return filepath.Join("/proc/sys/net/ipv4/conf", br, "route_localnet")
}

// routeLocalnet reports whether route_localnet is on for bridge br.
//
//	sysctl net.ipv4.conf.BR.route_localnet
func routeLocalnet(br string) (bool, error) {
	b, err := os.ReadFile(localnetPath(br))
	if err != nil {
		return false, fmt.Errorf("read route_localnet of %s: %w", br, err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// setRouteLocalnet turns route_localnet on bridge br on or off. Forwards from
// the host's 127.0.0.1 need it: the connection leaves through the bridge with
// its loopback source (masqueraded only after routing) and its answers come
// back to 127.0.0.1. Its danger, guests reaching the host's loopback services
// through the bridge, is what the network's loopback guard rule drops.
//
//	sysctl -w net.ipv4.conf.BR.route_localnet=1
func setRouteLocalnet(br string, on bool) error {
	v := "0\n"
	if on {
		v = "1\n"
	}
	if err := os.WriteFile(localnetPath(br), []byte(v), 0o644); err != nil {
		return fmt.Errorf("set route_localnet of %s: %w", br, err)
	}
	return nil
}

// forwards4 reports whether fs holds an IPv4 forward: only those need
// route_localnet (for 127.0.0.1), and only with them is it guarded.
func forwards4(fs []state.Forward) bool {
	for _, f := range fs {
		if f.Guest.Is4() {
			return true
		}
	}
	return false
}

// localnetBefore turns off the route_localnet kvmnet turned on when the
// network has no IPv4 forward left, before the rules that guard it go.
func (u *upCall) localnetBefore() error {
	if forwards4(u.forwards) || !u.rec.RouteLocalnet {
		return nil
	}
	if err := setRouteLocalnet(u.n.Bridge, false); err != nil {
		return err
	}
	u.rec.RouteLocalnet = false
	return nil
}

// localnetAfter turns route_localnet on for a network with IPv4 forwards,
// once the rules that guard it are in.
func (u *upCall) localnetAfter() error {
	if !forwards4(u.forwards) || u.rec.RouteLocalnet {
		return nil
	}
	on, err := routeLocalnet(u.n.Bridge)
	if err != nil || on {
		return err
	}
	u.rec.RouteLocalnet = true
	if err := u.intend("turn on route_localnet on " + u.n.Bridge); err != nil {
		return err
	}
	return setRouteLocalnet(u.n.Bridge, true)
}

// servicesCurrent reports whether the running daemon's configuration is the
// one n asks for now.
func servicesCurrent(d state.Dir, n config.Net, evpnLink string) (bool, error) {
	want, err := servicesConfig(d, n, evpnLink)
	if err != nil {
		return false, err
	}
	have, ok, err := ServicesConfig(d, n.Name)
	if err != nil || !ok {
		return false, err
	}
	a, errA := json.Marshal(want)
	b, errB := json.Marshal(have)
	if err := errors.Join(errA, errB); err != nil {
		return false, fmt.Errorf("compare DHCP/DNS configuration: %w", err)
	}
	return string(a) == string(b), nil
}
