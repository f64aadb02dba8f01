package ops

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
)

// PortStats are a port's counters as the host sees them (`ip -s link show
// PORT`): rx is what the guest sent (the port received it), tx what reached
// the guest.
type PortStats struct {
	RxBytes   uint64 `json:"rx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
}

// PortLimits are the bandwidth limits on a port, read from the kernel, in
// bits per second (0: none): in to the guest, out from it, and the static
// hosts' own, by MAC (docs/bandwidth.md).
type PortLimits struct {
	In    uint64          `json:"in"`
	Out   uint64          `json:"out"`
	Hosts []HostLimitJSON `json:"hosts"`
}

// HostLimitJSON is a static host's own limits on a port; 0 leaves a direction to the port's.
type HostLimitJSON struct {
	MAC string `json:"mac"`
	In  uint64 `json:"in"`
	Out uint64 `json:"out"`
}

// portTraffic fills p's counters from link l, and its limits when the port
// carries any.
func portTraffic(p *PortStatus, l netlink.Link, fail func(error)) {
	if st := l.Attrs().Statistics; st != nil {
		p.Stats = &PortStats{RxBytes: st.RxBytes, RxPackets: st.RxPackets, TxBytes: st.TxBytes, TxPackets: st.TxPackets}
	}
	s, err := bridge.ReadShaping(l)
	if err != nil {
		fail(err)
		return
	}
	if s.Empty() {
		return
	}
	p.Limits = &PortLimits{In: s.In, Out: s.Out, Hosts: []HostLimitJSON{}}
	for _, h := range s.Hosts {
		p.Limits.Hosts = append(p.Limits.Hosts, HostLimitJSON{MAC: h.MAC.String(), In: h.In, Out: h.Out})
	}
}

// trafficRow is a port's line of the TRAFFIC table.
func trafficRow(network string, p PortStatus) string {
	rx, tx := "-", "-"
	if s := p.Stats; s != nil {
		rx = fmt.Sprintf("%s/%d", byteCount(s.RxBytes), s.RxPackets)
		tx = fmt.Sprintf("%s/%d", byteCount(s.TxBytes), s.TxPackets)
	}
	limit := "-"
	if l := p.Limits; l != nil {
		parts := []string{"in " + rateCell(l.In), "out " + rateCell(l.Out)}
		for _, h := range l.Hosts {
			parts = append(parts, fmt.Sprintf("%s: in %s, out %s", h.MAC, rateCell(h.In), rateCell(h.Out)))
		}
		limit = strings.Join(parts, "; ")
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", p.Name, network, rx, tx, limit)
}

// rateCell writes bits per second as tc does: 20Mbit; "-" for no limit.
func rateCell(bits uint64) string {
	switch {
	case bits == 0:
		return "-"
	case bits%1e9 == 0:
		return strconv.FormatUint(bits/1e9, 10) + "Gbit"
	case bits%1e6 == 0:
		return strconv.FormatUint(bits/1e6, 10) + "Mbit"
	case bits%1e3 == 0:
		return strconv.FormatUint(bits/1e3, 10) + "Kbit"
	}
	return strconv.FormatUint(bits, 10) + "bit"
}

// byteCount writes a byte count in B, KiB, MiB or GiB, one decimal.
func byteCount(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 2; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMG"[exp])
}
