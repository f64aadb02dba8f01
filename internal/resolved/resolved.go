// Package resolved tells the host's systemd-resolved about a network's DNS
// server, per link, over its D-Bus API (org.freedesktop.resolve1.Manager), as
// `resolvectl dns BRIDGE GATEWAY` and `resolvectl domain BRIDGE ~DOMAIN` do:
// queries for names under the domain go to the gateway, where kvmnet's
// forwarder answers the guests' names, so `ssh web1.kvm` works on the host.
// A host without resolved (no system bus, or no one owning resolve1's name)
// is not an error: Register says ErrAbsent and nothing is done.
package resolved

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// ErrAbsent means systemd-resolved does not run on this host (namespace).
var ErrAbsent = errors.New("systemd-resolved is not running")

const (
	// systemBus is the system bus's socket, always: not
	// $DBUS_SYSTEM_BUS_ADDRESS, which a caller of a setuid helper would choose.
	systemBus = "/run/dbus/system_bus_socket"
	busName   = "org.freedesktop.resolve1"
	objPath   = "/org/freedesktop/resolve1"
	manager   = "org.freedesktop.resolve1.Manager"
	// errNoSuchLink is what resolved answers for a link it has not seen yet.
	errNoSuchLink = "org.freedesktop.resolve1.NoSuchLink"
	// timeout bounds all of a call's talk with the bus: a hung bus must not
	// hang a VM's start.
	timeout = 5 * time.Second
)

// linkDNS is resolved's a(iay): an address family and the address's bytes.
type linkDNS struct {
	Family  int32
	Address []byte
}

// linkDomain is resolved's a(sb): a domain and whether it only routes
// queries (the "~" of resolvectl) rather than being searched too.
type linkDomain struct {
	Domain      string
	RoutingOnly bool
}

// Register makes resolved send queries for names under domain, on link
// index, to servers.
//
//	resolvectl dns INDEX SERVER…; resolvectl domain INDEX ~DOMAIN
func Register(index int, servers []netip.Addr, domain string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, obj, err := open(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	dns := make([]linkDNS, 0, len(servers))
	for _, s := range servers {
		family := int32(unix.AF_INET)
		if s.Is6() {
			family = unix.AF_INET6
		}
		dns = append(dns, linkDNS{Family: family, Address: s.AsSlice()})
	}
	// resolved learns of a link from rtnetlink a moment after it is made.
	for try := 0; ; try++ {
		err = obj.CallWithContext(ctx, manager+".SetLinkDNS", 0, int32(index), dns).Err
		var de dbus.Error
		if try < 50 && errors.As(err, &de) && de.Name == errNoSuchLink {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		return fmt.Errorf("systemd-resolved: set DNS of link %d: %w", index, err)
	}
	if err := obj.CallWithContext(ctx, manager+".SetLinkDomains", 0, int32(index), []linkDomain{{Domain: domain, RoutingOnly: true}}).Err; err != nil {
		return fmt.Errorf("systemd-resolved: set domain of link %d: %w", index, err)
	}
	return nil
}

// Revert makes resolved forget what Register told it of link index. A
// link resolved no longer knows, or no resolved at all, is not an error.
//
//	resolvectl revert INDEX
func Revert(index int) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, obj, err := open(ctx)
	if errors.Is(err, ErrAbsent) {
		return nil
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	err = obj.CallWithContext(ctx, manager+".RevertLink", 0, int32(index)).Err
	var de dbus.Error
	if errors.As(err, &de) && de.Name == errNoSuchLink {
		return nil
	}
	if err != nil {
		return fmt.Errorf("systemd-resolved: revert link %d: %w", index, err)
	}
	return nil
}

// open connects to the system bus and finds resolved on it. No bus (no
// socket, or one no daemon listens on) is no resolved.
func open(ctx context.Context) (*dbus.Conn, dbus.BusObject, error) {
	if _, err := os.Stat(systemBus); errors.Is(err, os.ErrNotExist) {
		return nil, nil, ErrAbsent
	}
	conn, err := dbus.Connect("unix:path="+systemBus, dbus.WithContext(ctx))
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil, nil, ErrAbsent
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	var owned bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, busName).Store(&owned); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ask the system bus for %s: %w", busName, err)
	}
	if !owned {
		conn.Close()
		return nil, nil, ErrAbsent
	}
	return conn, conn.Object(busName, objPath), nil
}
