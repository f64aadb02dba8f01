package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Rate is a rate in bits per second, written in the units tc uses
// (tc(8), "RATES"): "20mbit", "512kbit", "1.5gbit", "2mbps" (bytes), "10mibit".
type Rate uint64

// The rates a limit may have: below MinRate a single full-size packet takes
// longer than a second (a guest would seem dead, not slow); above MaxRate a
// tap is not the bottleneck of anything.
const (
	MinRate Rate = 8_000
	MaxRate Rate = 100_000_000_000
)

// rateUnits are tc's units and what one of each is in bits per second.
var rateUnits = map[string]float64{
	"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"kibit": 1 << 10, "mibit": 1 << 20, "gibit": 1 << 30, "tibit": 1 << 40,
	"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
	"kibps": 8 << 10, "mibps": 8 << 20, "gibps": 8 << 30, "tibps": 8 << 40,
}

// UnmarshalText accepts a number and one of tc's units, from 8kbit to 100gbit.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRate reads a rate as tc writes one.
func ParseRate(s string) (Rate, error) {
	bad := fmt.Errorf("rate %s: want a number and a unit of tc's, like \"20mbit\", \"512kbit\" or \"2mbps\" (bytes)", Quote(s))
	lower := strings.ToLower(s)
	cut := strings.IndexFunc(lower, func(c rune) bool { return c >= 'a' && c <= 'z' })
	if cut <= 0 {
		return 0, bad
	}
	unit, ok := rateUnits[lower[cut:]]
	if !ok || !decimal(lower[:cut]) {
		return 0, bad
	}
	n, err := strconv.ParseFloat(lower[:cut], 64)
	if err != nil {
		return 0, bad
	}
	bits := n * unit
	if bits < float64(MinRate) || bits > float64(MaxRate) {
		return 0, fmt.Errorf("rate %s: want 8kbit to 100gbit", Quote(s))
	}
	return Rate(bits), nil
}

// decimal: digits with at most one '.', as tc writes a rate's number (no
// sign, exponent or hex, which ParseFloat would take).
func decimal(s string) bool {
	dot := false
	for _, c := range []byte(s) {
		switch {
		case c == '.' && !dot:
			dot = true
		case c < '0' || c > '9':
			return false
		}
	}
	return s != "."
}

// String writes the rate as tc shows it, e.g. 20Mbit.
func (r Rate) String() string {
	for _, u := range []struct {
		unit string
		bits Rate
	}{{"Gbit", 1e9}, {"Mbit", 1e6}, {"Kbit", 1e3}} {
		if r >= u.bits && r%u.bits == 0 {
			return strconv.FormatUint(uint64(r/u.bits), 10) + u.unit
		}
	}
	return strconv.FormatUint(uint64(r), 10) + "bit"
}

// Bandwidth limits a guest's port: In is the rate to the guest (the tap's
// egress), Out the rate from it (the tap's ingress); zero is no limit.
type Bandwidth struct {
	In  Rate `toml:"in" json:",omitempty"`
	Out Rate `toml:"out" json:",omitempty"`
}

// Set reports whether b limits either direction.
func (b Bandwidth) Set() bool { return b.In != 0 || b.Out != 0 }

// Over is b with each direction o names replaced by o's.
func (b Bandwidth) Over(o Bandwidth) Bandwidth {
	if o.In != 0 {
		b.In = o.In
	}
	if o.Out != 0 {
		b.Out = o.Out
	}
	return b
}

// Shaped reports whether a port of n gets traffic control: the network or
// one of its static hosts limits a direction.
func (n Net) Shaped() bool {
	if n.Bandwidth.Set() {
		return true
	}
	for _, h := range n.Hosts {
		if h.Bandwidth != nil && h.Bandwidth.Set() {
			return true
		}
	}
	return false
}

// checkBandwidth: a bandwidth names at least one direction, and only a
// network whose guests have ports kvmnet attaches (not one of libvirt's
// hooks alone) takes one; a host's needs a mac, which it is matched by.
func (n *Network) checkBandwidth() error {
	if n.Bandwidth != nil && !n.Bandwidth.Set() {
		return keyErrorf("bandwidth", nil, "{}: name in, out or both, e.g. { in = \"20mbit\" }")
	}
	for _, h := range n.Hosts {
		if h.Bandwidth != nil && !h.Bandwidth.Set() {
			return keyErrorf("host.bandwidth", nil, "{}: name in, out or both, e.g. { out = \"5mbit\" }")
		}
	}
	return nil
}
