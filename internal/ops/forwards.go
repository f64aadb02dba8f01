package ops

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
)

// PortForwardStatus is one port forward of a network, in `status --json`:
//
//	"forwards": [{"proto": "tcp", "host_ip": "", "port": "8080", "to": "192.168.100.21:80", "leased": true}]
//
// Of a network that is up, the forwards its rules hold (an edit of the file
// counts once reloaded); of one that is down, those of the file. leased says
// whether a DHCP lease holds the guest's address.
type PortForwardStatus struct {
	Proto  string `json:"proto"`
	HostIP string `json:"host_ip"` // "" for every address of the host
	Port   string `json:"port"`    // "8080" or "8000-8010"
	To     string `json:"to"`      // "192.168.100.21:80" or "…:9000-9010"
	Leased bool   `json:"leased"`
}

// forwardStatuses lists the forwards: the record's when the network is up, else the file's.
func forwardStatuses(recorded []state.Forward, up bool, conf config.Net, leases []LeaseStatus) []PortForwardStatus {
	fs := recorded
	if !up {
		fs = nil
		for _, f := range conf.Forwards {
			fs = append(fs, state.Forward{Proto: f.Proto, HostIP: f.HostIP, First: f.Ports.First, Last: f.Ports.Last, Guest: f.Guest, GuestPort: f.ToFirst})
		}
	}
	out := []PortForwardStatus{}
	for _, f := range fs {
		s := PortForwardStatus{Proto: f.Proto, Port: config.PortRange{First: f.First, Last: f.Last}.String(),
			To: config.HostPort(f.Guest, config.PortRange{First: f.GuestPort, Last: f.GuestPort + f.Last - f.First}.String())}
		if f.HostIP.IsValid() {
			s.HostIP = f.HostIP.String()
		}
		for _, l := range leases {
			if l.IP == f.Guest.String() {
				s.Leased = true
			}
		}
		out = append(out, s)
	}
	return out
}

// forwardRow is a forward's line in status's table.
func forwardRow(network string, f PortForwardStatus) string {
	host := f.Port
	if f.HostIP != "" {
		host = f.HostIP + ":" + f.Port
		if a, err := netip.ParseAddr(f.HostIP); err == nil {
			host = config.HostPort(a, f.Port)
		}
	}
	lease := yesNo(f.Leased, "leased", "no lease")
	if strings.HasPrefix(f.To, "[") { // IPv6: addresses by SLAAC or static, no DHCP lease to show
		lease = "-"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", f.Proto, host, network, f.To, lease)
}

// portForwards: a forward whose guest holds no lease goes nowhere (the guest is
// off, or took another address); a program listening on a forwarded port no
// longer gets the connections that port's forward takes.
func (c *netCheck) portForwards() []Finding {
	if len(c.forwards) == 0 {
		return nil
	}
	var fs []Finding
	if c.rec.Services && c.conf.DHCP {
		leases := c.h.leases(c.name, c.conf.LeaseFile, func(error) {})
		for _, f := range forwardStatuses(c.forwards, true, c.conf, leases) {
			if !f.Leased && !strings.HasPrefix(f.To, "[") { // IPv6 guests hold no DHCP lease
				fs = append(fs, Finding{Network: c.name, Info: true,
					Problem:  fmt.Sprintf("forward %s %s goes to %s, which no guest has a lease on (off, or on another address?)", f.Proto, f.Port, f.To),
					Evidence: "kvmnet status lists no lease of " + strings.Split(f.To, ":")[0],
					Fix:      "start the guest, give it that address as a static host, or point the forward at its address and kvmnet reload"})
			}
		}
	}
	for _, f := range c.forwards {
		for _, l := range listeners(f) {
			fs = append(fs, Finding{Network: c.name,
				Problem:  fmt.Sprintf("a program listens on %s port %d, which the forward to %s takes: it gets none of those connections", f.Proto, l.port, f.Guest),
				Evidence: fmt.Sprintf("/proc/net/%s: %s listening", l.table, l.addr),
				Fix:      fmt.Sprintf("ss -lnp 'sport = :%d' names it; move it or the forward", l.port)})
		}
	}
	return fs
}

// listener is a socket bound to a forwarded port.
type listener struct {
	table string // tcp, tcp6, udp, udp6
	addr  string // as bound, e.g. 0.0.0.0:8080
	port  uint16
}

// listeners finds the sockets of this namespace that listen (tcp) or are
// bound (udp) on one of f's host ports, on f's host address or on all, of
// f's family (an IPv6 socket on [::] takes IPv4 too).
func listeners(f state.Forward) []listener {
	var out []listener
	tables := []string{f.Proto, f.Proto + "6"}
	if f.Guest.Is6() {
		tables = tables[1:]
	}
	for _, table := range tables {
		fh, err := os.Open("/proc/net/" + table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || (f.Proto == "tcp" && fields[3] != "0A") || (f.Proto == "udp" && fields[3] != "07") {
				continue
			}
			addr, port, ok := procAddr(fields[1])
			if !ok || port < f.First || port > f.Last {
				continue
			}
			if f.HostIP.IsValid() && !addr.IsUnspecified() && addr.Unmap() != f.HostIP {
				continue
			}
			out = append(out, listener{table: table, addr: netip.AddrPortFrom(addr, port).String(), port: port})
		}
		fh.Close()
	}
	return out
}

// procAddr reads a /proc/net/{tcp,udp}[6] address, "0100007F:1F90": the
// address as the kernel stores it (each 32-bit word in host order, little
// endian here), the port in hex.
func procAddr(s string) (netip.Addr, uint16, bool) {
	a, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	b, herr := hex.DecodeString(a)
	if !ok || err != nil || herr != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, 0, false
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	addr, _ := netip.AddrFromSlice(b)
	return addr, uint16(port), true
}
