package operator

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// statusJSON is the schema `kvmnet status --json` documents (schema 1),
// written out here independently of the code that prints it, so that a
// renamed, dropped or added field fails this test.
type statusJSON struct {
	Schema               int  `json:"schema"`
	IPForward            bool `json:"ip_forward"`
	BridgeNFCallIptables int  `json:"bridge_nf_call_iptables"`
	Networks             []struct {
		Name       string `json:"name"`
		Configured bool   `json:"configured"`
		Up         bool   `json:"up"`
		Pinned     bool   `json:"pinned"`
		Mode       string `json:"mode"`
		Bridge     struct {
			Name           string `json:"name"`
			Exists         bool   `json:"exists"`
			Owned          bool   `json:"owned"`
			MTU            int    `json:"mtu"`
			STP            bool   `json:"stp"`
			ForwardDelayMS int64  `json:"forward_delay_ms"`
		} `json:"bridge"`
		Address struct {
			Prefix  string `json:"prefix"`
			Present bool   `json:"present"`
			Owned   bool   `json:"owned"`
		} `json:"address"`
		Forwarding struct {
			Needed bool `json:"needed"`
			Held   bool `json:"held"`
		} `json:"forwarding"`
		Rules struct {
			Checked  bool     `json:"checked"`
			Owned    bool     `json:"owned"`
			Missing  []string `json:"missing"`
			Firewall string   `json:"firewall"`
			Older    string   `json:"older,omitempty"`
		} `json:"rules"`
		Services struct {
			Enabled bool `json:"enabled"`
			Running bool `json:"running"`
			PID     int  `json:"pid"`
			Leases  []struct {
				IP       string    `json:"ip"`
				MAC      string    `json:"mac"`
				Hostname string    `json:"hostname"`
				Expires  time.Time `json:"expires"`
				Static   bool      `json:"static"`
			} `json:"leases"`
		} `json:"services"`
		Ports    []portJSON `json:"ports"`
		Forwards []struct {
			Proto  string `json:"proto"`
			HostIP string `json:"host_ip"`
			Port   string `json:"port"`
			To     string `json:"to"`
			Leased bool   `json:"leased"`
		} `json:"forwards"`
		Domains []struct {
			Name  string    `json:"name"`
			UUID  string    `json:"uuid"`
			Taps  []string  `json:"taps"`
			Since time.Time `json:"since"`
		} `json:"domains"`
		VXLAN  *vxlanJSON `json:"vxlan,omitempty"`
		Errors []string   `json:"errors"`
		Broken string     `json:"broken,omitempty"`
	} `json:"networks"`
}

// macJSON is a guest on another host that FRR's zebra installed.
type macJSON struct {
	MAC  string `json:"mac"`
	VTEP string `json:"vtep"`
}

// vxlanJSON is a network's overlay, present only for a network with one.
type vxlanJSON struct {
	Device string    `json:"device"`
	Exists bool      `json:"exists"`
	Owned  bool      `json:"owned"`
	VNI    uint32    `json:"vni"`
	Port   int       `json:"port"`
	MTU    int       `json:"mtu"`
	EVPN   bool      `json:"evpn"`
	MACs   []macJSON `json:"macs"`
	Peers  []struct {
		Address string `json:"address"`
		Flood   bool   `json:"flood"`
		Heard   bool   `json:"heard"`
	} `json:"peers"`
}

type portJSON struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	KVMnet   bool   `json:"kvmnet"`
	Attached bool   `json:"attached"`
	Up       bool   `json:"up"`
	MTU      int    `json:"mtu"`
	MAC      string `json:"mac"`
	Domain   string `json:"domain,omitempty"`
	// Guard is what the network's guard holds the port to (docs/guard.md).
	Guard *struct {
		MAC      string `json:"mac,omitempty"`
		IP       string `json:"ip,omitempty"`
		Isolated bool   `json:"isolated"`
	} `json:"guard,omitempty"`
	Stats *struct {
		RxBytes   uint64 `json:"rx_bytes"`
		RxPackets uint64 `json:"rx_packets"`
		TxBytes   uint64 `json:"tx_bytes"`
		TxPackets uint64 `json:"tx_packets"`
	} `json:"stats,omitempty"`
	Limits *struct {
		In    uint64 `json:"in"`
		Out   uint64 `json:"out"`
		Hosts []struct {
			MAC string `json:"mac"`
			In  uint64 `json:"in"`
			Out uint64 `json:"out"`
		} `json:"hosts"`
	} `json:"limits,omitempty"`
}

// decodeStatus decodes out against the schema: no unknown field, no field
// missing, no null where the schema promises a list.
func decodeStatus(t testing.TB, out string) statusJSON {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var s statusJSON
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("status --json does not match the schema: %v\n%s", err, out)
	}
	var raw, again any
	b, _ := json.Marshal(s)
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(raw, again) {
		t.Fatalf("status --json lacks a field of the schema or has a null list:\n--- got\n%s\n--- schema\n%s", out, b)
	}
	if s.Schema != 1 {
		t.Errorf("schema = %d, want 1", s.Schema)
	}
	return s
}

func (s statusJSON) network(t *testing.T, name string) int {
	t.Helper()
	for i, n := range s.Networks {
		if n.Name == name {
			return i
		}
	}
	t.Fatalf("no network %s in status", name)
	return -1
}

// TestStatusJSON: the schema, and what it says about a NAT network with a VM,
// a pinned host-only network, and rules gone missing.
func TestStatusJSON(t *testing.T) {
	h := newHost(t, "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\ndhcp = false\ndns = false\n")
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	h.must("up", "lab")

	s := h.status()
	if !s.IPForward || len(s.Networks) != 2 {
		t.Fatalf("status: %+v", s)
	}
	d := s.Networks[s.network(t, "default")]
	if !d.Up || d.Pinned || d.Mode != "nat" || !d.Configured {
		t.Errorf("default: %+v", d)
	}
	if d.Bridge.Name != "br0" || !d.Bridge.Exists || !d.Bridge.Owned || d.Bridge.MTU != 1500 || d.Bridge.STP {
		t.Errorf("default bridge: %+v", d.Bridge)
	}
	if d.Address.Prefix != "192.168.100.1/24" || !d.Address.Present || !d.Address.Owned {
		t.Errorf("default address: %+v", d.Address)
	}
	if !d.Forwarding.Needed || !d.Forwarding.Held || !d.Rules.Checked || !d.Rules.Owned || len(d.Rules.Missing) != 0 {
		t.Errorf("default forwarding %+v rules %+v", d.Forwarding, d.Rules)
	}
	if !d.Services.Enabled || !d.Services.Running || d.Services.PID <= 0 {
		t.Errorf("default services: %+v", d.Services)
	}
	want := portJSON{Name: "vnet0", Kind: "tuntap", KVMnet: true, Attached: true, Up: true, MTU: 1500}
	if len(d.Ports) != 1 || d.Ports[0].MAC == "" {
		t.Fatalf("default ports: %+v", d.Ports)
	}
	got := d.Ports[0]
	if got.Stats == nil || got.Limits != nil {
		t.Errorf("port %s: stats %v, limits %v; want counters and no limits", got.Name, got.Stats, got.Limits)
	}
	got.MAC, got.Stats = "", nil // TestPortTraffic checks the counters
	if got != want {
		t.Errorf("port = %+v, want %+v", got, want)
	}
	l := s.Networks[s.network(t, "lab")]
	if !l.Up || !l.Pinned || l.Mode != "hostonly" || l.Forwarding.Needed || l.Services.Enabled || len(l.Ports) != 0 {
		t.Errorf("lab: %+v", l)
	}

	resume := h.Hold("default") // or its daemon heals the rules first
	h.MustRun("iptables", "-t", "nat", "-F")
	if d := h.status("default").Networks; len(d) != 1 || len(d[0].Rules.Missing) == 0 {
		t.Errorf("status default after iptables -t nat -F: %+v", d)
	}
	out := h.must("status")
	for _, want := range []string{"br0 (made)", "kvlab0 (made)", "up,pinned", "MISSING", "vnet0", "kvmnet"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	resume()
	if _, e, code := h.kvmnet(nil, "status", "nosuch"); code != 2 || !strings.Contains(e, "not configured") {
		t.Errorf("status nosuch: exit %d, %s", code, e)
	}
}

// TestStatusNotUp: a fresh host lists the built-in default network as down.
func TestStatusNotUp(t *testing.T) {
	h := newHost(t, "")
	s := h.status()
	if len(s.Networks) != 1 || s.Networks[0].Up || s.Networks[0].Bridge.Exists {
		t.Errorf("fresh status: %+v", s)
	}
}

// TestStatusLeases: guests that took leases with busybox's udhcpc are in
// status, JSON and table alike: one from the pool, and one that is a static
// host of the file.
func TestStatusLeases(t *testing.T) {
	udhcpc := busybox(t)
	// The guest is a namespace on a veth, not a VM on a tap; it takes both
	// leases on one port, with two MACs, which the guard refuses (one MAC
	// per port, docs/guard.md).
	h := newHost(t, "[network.default]\nports = \"any\"\nguard = false\n[[network.default.host]]\nmac = \"52:54:00:00:00:99\"\nip = \"192.168.100.99\"\nname = \"fixed\"\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	h.must("up", "default")
	guest := testns.New(t)
	h.MustRun("ip", "link", "add", "g0", "type", "veth", "peer", "name", "eth0", "netns", guest.Name)
	h.helper("kvmnet-natup", "g0")
	lease := func(mac, hostname string) {
		guest.MustRun("ip", "link", "set", "eth0", "address", mac, "up")
		guest.MustRun(udhcpc, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true", "-x", "hostname:"+hostname)
	}
	lease("52:54:00:ab:cd:01", "web1")
	lease("52:54:00:00:00:99", "whatever")

	want := map[string]string{"52:54:00:ab:cd:01": "web1", "52:54:00:00:00:99": "fixed"}
	got := map[string]string{}
	var ip string
	for deadline := time.Now().Add(5 * time.Second); len(got) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// The daemon writes its leases shortly after the ACK.
		for _, l := range h.status().Networks[0].Services.Leases {
			if l.Hostname != want[l.MAC] || time.Until(l.Expires) < 50*time.Minute {
				continue
			}
			switch {
			case l.MAC == "52:54:00:00:00:99" && l.Static && l.IP == "192.168.100.99":
				got[l.MAC] = l.IP
			case !l.Static && strings.HasPrefix(l.IP, "192.168.100."):
				got[l.MAC], ip = l.IP, l.IP
			}
		}
	}
	if len(got) != 2 {
		t.Fatalf("leases in status: %+v, want web1 from the pool and fixed at 192.168.100.99",
			h.status().Networks[0].Services.Leases)
	}
	if out := h.must("status"); !strings.Contains(out, ip) || !strings.Contains(out, "web1") || !strings.Contains(out, "fixed") {
		t.Errorf("status table lacks the leases:\n%s", out)
	}
	h.helper("kvmnet-natdown", "g0")
	h.must("down", "default")
	h.MustRun("ip", "link", "del", "g0")
	h.AssertClean(rules, fwd)
}

// busybox returns busybox-static's path, which has udhcpc (scripts/deps.sh installs it).
func busybox(t *testing.T) string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Skip("busybox not installed (busybox-static)")
	return ""
}

// TestStatusAsUser: the README's `kvmnet status` in another terminal, as an
// ordinary user, shows the network, its tap and its leases; the rules, which
// only root may read, are "unknown (needs root)" rather than an error line.
func TestStatusAsUser(t *testing.T) {
	h := newHostFW(t, "nftables", "")
	// lease_dir as on a host: readable by all (t.TempDir's are root's only).
	for _, d := range []string{filepath.Dir(h.Config), filepath.Dir(filepath.Dir(h.Config))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	out, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", filepath.Join(bin, "kvmnet"), "status")
	if err != nil || e != "" || !regexpLine(out, `^default\s+nat\s+up\s+br0 \(made\)\s+1500\s+192\.168\.100\.1/24 \(made\)\s+on\s+unknown \(needs root\)\s+pid \d+`) ||
		!regexpLine(out, `^vnet0\s+default\s+tuntap\s+kvmnet\s+attached`) || regexpLine(out, `^default: `) {
		t.Errorf("kvmnet status as uid 65534: %v\nstdout:\n%s\nstderr:\n%s", err, out, e)
	}
	h.helper("kvmnet-natdown", "vnet0")
}
