// Package firewalld puts kvmnet's bridges into a firewalld zone, as libvirt
// puts its own into its zone "libvirt": through firewalld's D-Bus API
// (org.fedoraproject.FirewallD1), never firewall-cmd. firewalld is the
// host's: kvmnet only binds its bridges to a zone the host already has, at
// runtime, and unbinds them when it is done; firewalld keeps such bindings
// across its reloads.
package firewalld

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	busName  = "org.fedoraproject.FirewallD1"
	path     = "/org/fedoraproject/FirewallD1"
	zoneIfc  = busName + ".zone"
	sockPath = "/run/dbus/system_bus_socket"
)

// callTimeout bounds each call on the bus: a firewalld busy with its own
// reload, or a hung bus, must not hold an up (and the network's lock) or a
// heal for ever.
const callTimeout = 5 * time.Second

// call is o.Call, given at most callTimeout.
func call(o dbus.BusObject, method string, args ...any) *dbus.Call {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return o.CallWithContext(ctx, method, 0, args...)
}

// Zones are the zones kvmnet binds a bridge to, the first the host has: an
// admin's own "kvmnet", else libvirt's, which its package installs and which
// is made for VMs' bridges (forwarding accepted; from the guests to the host
// only DHCP, DNS, ICMP, SSH and TFTP).
var Zones = []string{"kvmnet", "libvirt"}

// Conn is a connection to firewalld.
type Conn struct {
	bus *dbus.Conn
	obj dbus.BusObject
}

// Open connects to the system bus and returns firewalld there, or nil and
// no error when there is no bus, no firewalld on it, or one of another
// network namespace.
//
//	busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus NameHasOwner s org.fedoraproject.FirewallD1
func Open() (*Conn, error) {
	// The system bus's address is the socket's unless the environment names
	// another; without either there is no bus to ask.
	if _, err := os.Stat(sockPath); err != nil && os.Getenv("DBUS_SYSTEM_BUS_ADDRESS") == "" {
		return nil, nil
	}
	bus, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, nil // no bus: no firewalld
	}
	var has bool
	if err := call(bus.BusObject(), "org.freedesktop.DBus.NameHasOwner", busName).Store(&has); err != nil {
		bus.Close()
		return nil, fmt.Errorf("ask the system bus for firewalld: %w", err)
	}
	if !has {
		bus.Close()
		return nil, nil
	}
	if same, err := sameNetns(bus); err != nil || !same {
		bus.Close()
		return nil, err
	}
	return &Conn{bus: bus, obj: bus.Object(busName, path)}, nil
}

// sameNetns reports whether firewalld runs in the calling thread's network
// namespace: a bus shared across namespaces (kvmnet in one of a host's
// namespaces) has the firewalld of another, whose zones are for its links.
//
//	busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetConnectionUnixProcessID s org.fedoraproject.FirewallD1
func sameNetns(bus *dbus.Conn) (bool, error) {
	var pid uint32
	if err := call(bus.BusObject(), "org.freedesktop.DBus.GetConnectionUnixProcessID", busName).Store(&pid); err != nil {
		return false, fmt.Errorf("ask the system bus for firewalld's pid: %w", err)
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return false, nil // not visible from here: not ours
	}
	ours, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		return false, fmt.Errorf("this thread's network namespace: %w", err)
	}
	return theirs == ours, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.bus.Close() }

// Zone returns the zone firewalld has for its runtime, of Zones, the first
// it has; "" when it has none of them.
//
//	firewall-cmd --get-zones
func (c *Conn) Zone() (string, error) {
	var zones []string
	if err := call(c.obj, zoneIfc+".getZones").Store(&zones); err != nil {
		return "", fmt.Errorf("firewalld zones: %w", err)
	}
	for _, z := range Zones {
		if slices.Contains(zones, z) {
			return z, nil
		}
	}
	return "", nil
}

// ZoneOf returns the zone interface iface is bound to, "" when none (it
// then falls in the default zone).
//
//	firewall-cmd --get-zone-of-interface=IFACE
func (c *Conn) ZoneOf(iface string) (string, error) {
	var zone string
	if err := call(c.obj, zoneIfc+".getZoneOfInterface", iface).Store(&zone); err != nil {
		return "", fmt.Errorf("firewalld zone of %s: %w", iface, err)
	}
	return zone, nil
}

// Bind binds interface iface to zone, at runtime.
//
//	firewall-cmd --zone=ZONE --change-interface=IFACE
func (c *Conn) Bind(zone, iface string) error {
	if err := call(c.obj, zoneIfc+".changeZoneOfInterface", zone, iface).Err; err != nil {
		return fmt.Errorf("firewalld: put %s into zone %s: %w", iface, zone, err)
	}
	return nil
}

// Unbind takes interface iface out of zone, if it is still there.
//
//	firewall-cmd --zone=ZONE --remove-interface=IFACE
func (c *Conn) Unbind(zone, iface string) error {
	now, err := c.ZoneOf(iface)
	if err != nil || now != zone {
		return err
	}
	if err := call(c.obj, zoneIfc+".removeInterface", zone, iface).Err; err != nil {
		return fmt.Errorf("firewalld: take %s out of zone %s: %w", iface, zone, err)
	}
	return nil
}
