// Package ops is what the operator tool `kvmnet` does beyond the helpers:
// status, doctor, gc, up and down, reload and the @NETWORK links. It reads
// and changes the caller's network namespace only through the helpers' own
// packages (lifecycle, state, bridge, firewall, netsvc/ctl), so that it sees
// and does exactly what they do.
package ops

import (
	"slices"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/state"
)

// Host is the caller's network namespace as kvmnet knows it: its state
// directory and the configuration file.
type Host struct {
	Dir  state.Dir
	File *config.File
}

// Names lists every network kvmnet knows, sorted: the default network, those
// the file defines and those with a record (up now, possibly since removed
// from the file).
func (h Host) Names() ([]string, error) {
	names := []string{config.DefaultNetwork}
	for n := range h.File.Networks {
		names = append(names, n)
	}
	names = append(names, h.File.BrokenNames()...)
	live, err := h.Dir.Networks()
	if err != nil {
		return nil, err
	}
	names = append(names, live...)
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Resolve returns network name as the file defines it. mode is the one it
// takes when neither the file nor its record gives one: a network that is up
// keeps the mode it came up with.
func (h Host) Resolve(name string, mode config.Mode) (config.Net, error) {
	if rec, ok, err := h.Dir.Load(name); err != nil {
		return config.Net{}, err
	} else if ok {
		mode = config.Mode(rec.Mode)
	}
	return h.File.Network(name, mode)
}

// Configured reports whether network name needs no record to be known: the
// file defines it, or it is the built-in default.
func (h Host) Configured(name string) bool {
	_, ok := h.File.Networks[name]
	return ok || h.File.Broken[name] != nil || name == config.DefaultNetwork
}

// ConfigError is an error in the configuration: the caller's to fix.
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

// Up sets network name up with no VM and pins it, as `kvmnet up` does. A
// network with no mode in the file comes up as NAT, as kvmnet-natup makes it.
func (h Host) Up(name string) (config.Net, lifecycle.Result, error) {
	n, err := h.Resolve(name, config.NAT)
	if err != nil {
		return n, lifecycle.Result{}, ConfigError{err}
	}
	res, err := lifecycle.Pin(h.Dir, n)
	return n, res, err
}

// Down tears network name down, as `kvmnet down` does; see lifecycle.Release.
func (h Host) Down(name string, force bool) (lifecycle.Result, error) {
	return lifecycle.Release(h.Dir, name, force)
}
