package ops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
)

// What status and doctor say of an overlay whose VTEPs and MACs FRR's BGP
// EVPN installs: read from the kernel (the link's FDB, as zebra wrote it),
// and in doctor from FRR itself (its processes, zebra's vty socket).

// MACStatus is a guest on another host: its MAC and the VTEP (host) it is at.
type MACStatus struct {
	MAC  string `json:"mac"`
	VTEP string `json:"vtep"`
}

// evpnStatus fills s from what zebra installed on vx: a peer per remote VTEP
// (heard when a guest's MAC is at it) and the remote MACs.
func evpnStatus(s *VXLANStatus, vx netlink.Link, fail func(error)) *VXLANStatus {
	vteps, macs, err := bridge.EVPNRemotes(vx)
	if err != nil {
		fail(err)
	}
	at := map[string]bool{}
	for _, m := range macs {
		s.MACs = append(s.MACs, MACStatus{MAC: m.MAC.String(), VTEP: m.VTEP.String()})
		at[m.VTEP.String()] = true
	}
	for _, v := range vteps {
		s.Peers = append(s.Peers, PeerStatus{Address: v.String(), Flood: true, Heard: at[v.String()]})
	}
	return s
}

// evpnRow is an EVPN network's line in status's VXLAN table: its VTEPs,
// each with how many remote MACs are at it.
func evpnRow(dev string, n NetworkStatus) string {
	v := n.VXLAN
	peers := "evpn: no remote VTEP"
	if len(v.Peers) > 0 {
		var s []string
		for _, p := range v.Peers {
			count := 0
			for _, m := range v.MACs {
				if m.VTEP == p.Address {
					count++
				}
			}
			s = append(s, fmt.Sprintf("%s (%d MAC)", p.Address, count))
		}
		peers = "evpn: " + strings.Join(s, ", ")
	}
	return fmt.Sprintf("%s\t%s\t%d\t%d\t%s\t%s", dev, n.Name, v.VNI, v.Port, mtuOf(v.MTU), peers)
}

// writeEVPNTable lists the remote MACs zebra installed, one a line.
func writeEVPNTable(tw *tabwriter.Writer, s Status) {
	var rows []string
	for _, n := range s.Networks {
		if n.VXLAN == nil {
			continue
		}
		for _, m := range n.VXLAN.MACs {
			rows = append(rows, fmt.Sprintf("%s\t%s\t%s", m.MAC, n.Name, m.VTEP))
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(tw, "\nREMOTE MAC\tNETWORK\tVTEP")
		fmt.Fprintln(tw, strings.Join(rows, "\n"))
	}
}

// frrFindings: zebra or bgpd is not running in this network namespace, so
// no VNI of this host is advertised and no remote VTEP is installed.
func (c *netCheck) frrFindings() []Finding {
	var fs []Finding
	for _, d := range []string{"zebra", "bgpd"} {
		if pid, err := procHere(named(d)); err == nil && pid == "" {
			fs = append(fs, Finding{Network: c.name,
				Problem:  "FRR's " + d + " is not running in this network namespace: BGP EVPN neither advertises this host's VNIs nor installs the other hosts'",
				Evidence: "no process " + d + " in /proc with this network namespace",
				Fix:      "start FRR with zebra and bgpd (systemctl enable --now frr), configured as docs/evpn.md says"})
		}
	}
	return fs
}

// evpnFindings: what zebra says of the VNI when its vty socket is there to
// ask (EVPN off, or the VNI unknown to it); else no remote VTEP on the link
// (this host's VNI is not advertised, or no other host has it).
func (c *netCheck) evpnFindings(vx netlink.Link, o *config.Overlay) []Finding {
	name, show := vx.Attrs().Name, fmt.Sprintf("show evpn vni %d", o.VNI)
	out, err := frrVTY("zebra", show)
	switch {
	case err == nil && strings.TrimSpace(out) == "":
		// zebra answers EVPN's show commands with nothing while bgpd has
		// not turned EVPN on.
		return []Finding{{Network: c.name,
			Problem:  "zebra has EVPN off: bgpd lacks advertise-all-vni, so this host advertises no VNI and installs no other host's",
			Evidence: "zebra's " + show + ": an empty answer",
			Fix:      "add advertise-all-vni to address-family l2vpn evpn of bgpd's router bgp (docs/evpn.md)"}}
	case err == nil && strings.Contains(out, "not exist"):
		return []Finding{{Network: c.name,
			Problem:  fmt.Sprintf("zebra does not know VNI %d: FRR advertises nothing of this network", o.VNI),
			Evidence: "zebra's " + show + ": " + firstLine(out),
			Fix:      "check that " + name + " is on the network's bridge with a local address (kvmnet doctor --fix puts it back)"}}
	}
	vteps, _, err := bridge.EVPNRemotes(vx)
	if err != nil || len(vteps) > 0 {
		return nil
	}
	return []Finding{{Network: c.name,
		Problem:  fmt.Sprintf("VNI %d has no remote VTEP: it is not advertised, or no other host has it; guests here reach no other host", o.VNI),
		Evidence: "bridge fdb show dev " + name + ": no 00:00:00:00:00:00 entry",
		Fix:      "check bgpd's sessions (vtysh -c 'show bgp l2vpn evpn summary') and advertise-all-vni on every host"}}
}

// frrRunDir is where FRR's daemons put their vty sockets (Debian's frr).
const frrRunDir = "/var/run/frr"

// errVTY is a vty exchange that ended without FRR's end-of-answer mark.
var errVTY = errors.New("vty answer cut short")

// frrVTY runs one command on an FRR daemon's vty socket, as vtysh does: the
// command and a NUL out, the answer back, ended by three NULs and a status
// byte. Only doctor calls it, never an up.
func frrVTY(daemon, cmd string) (string, error) {
	conn, err := net.DialTimeout("unix", filepath.Join(frrRunDir, daemon+".vty"), time.Second)
	if err != nil {
		return "", fmt.Errorf("dial %s's vty: %w", daemon, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(append([]byte(cmd), 0)); err != nil {
		return "", fmt.Errorf("%s's vty: %w", daemon, err)
	}
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		out = append(out, buf[:n]...)
		if len(out) >= 4 && bytes.Equal(out[len(out)-4:len(out)-1], []byte{0, 0, 0}) {
			return string(out[:len(out)-4]), nil
		}
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s's vty: %w", daemon, errVTY)
		}
		if err != nil {
			return "", fmt.Errorf("%s's vty: %w", daemon, err)
		}
	}
}

// firstLine is s's first non-empty line, trimmed.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
