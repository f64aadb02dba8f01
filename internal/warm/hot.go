package warm

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Ext is the hot file's extension, beside the network's record in the
// state directory: NETWORK.hot.
const Ext = ".hot"

// GenExt is the network's generation file's extension, NETWORK.gen: a
// generation of whole rules later than the hot file's nftgen, which the
// daemon or the rule watcher moves past its own guard transactions
// (ctl.WriteGen writes it, docs/guard.md says what holds).
const GenExt = ".gen"

// maxHot bounds a hot file read; a real one is a few hundred bytes.
const maxHot = 4 << 10

// header is the hot file's first line; another means another format.
const header = "kvmnet-hot 1"

// Hot is what the engine proved of a network at the end of an up that
// changed nothing it would not change again, written under the network's
// lock: each item is a check the engine's warm up makes, which the front
// makes again in the same way. Anything the engine checks that is not here
// (a record mid-change, a reconfiguration, a VXLAN link, an iptables
// backend) means no hot file at all: the engine runs.
type Hot struct {
	Key      string // config.Net.Source: version, configuration file stamp, helper mode
	Network  string
	Bridge   string
	Index    int    // the bridge's ifindex: another bridge of that name is not the network's
	Mode     string // the network's mode, as logged
	AnyPorts bool   // ports = "any": any link but a bridge may be attached, not only taps
	Pinned   bool   // `kvmnet up` pinned it: its last VM's down leaves it up

	Addresses []Address // on the bridge
	Sysctls   []Sysctl  // files of /proc/sys and the value each must hold
	// The DHCP/DNS daemon (PID 0: none): its pid, as its pid file named it,
	// and its configuration file, its argv[1]. Only an up under the lock
	// starts a daemon, and it removes this file first: a process with that
	// pid and that command line is the daemon the pid file names.
	DaemonPID  int
	DaemonConf string
	// WatcherPID is the network's rule watcher (kvmnet-netsvc --watch
	// NETWORK …; 0: none), which forgets what the guard learned of ports
	// that are gone, as the daemon does: without it only the engine's up
	// forgets them.
	WatcherPID int
	// NFTGen: the network's rules are in nf_tables and were whole at this
	// ruleset generation; unchanged, and no legacy iptables filter table in
	// the way, it proves they still are. HasRules false: no rules at all.
	NFTGen   uint32
	HasRules bool
	// Group is the device group a port attached to the network goes into,
	// which its guard table matches (portguard.Group); 0: none.
	Group uint32
	// Isolate: a port attached is made an isolated bridge port (isolate_guests).
	Isolate bool
}

// Address is one address of the bridge: Text as logged ("192.168.100.1/24"),
// IP its 4 or 16 bytes, Bits its prefix length.
type Address struct {
	Text string
	IP   []byte
	Bits uint8
}

// Sysctl is a file of /proc/sys that must hold Value, e.g. ip_forward 1.
type Sysctl struct{ Path, Value string }

// Marshal encodes h as the hot file's lines.
func (h *Hot) Marshal() []byte {
	var b strings.Builder
	line := func(f ...string) { b.WriteString(strings.Join(f, " ") + "\n") }
	line(header)
	line("key", h.Key)
	line("network", h.Network)
	line("bridge", h.Bridge, strconv.Itoa(h.Index))
	line("mode", h.Mode)
	line("ports", yes(h.AnyPorts, "any", "taps"))
	line("pinned", yes(h.Pinned, "yes", "no"))
	for _, a := range h.Addresses {
		line("address", a.Text, hexOf(a.IP), strconv.Itoa(int(a.Bits)))
	}
	for _, s := range h.Sysctls {
		line("sysctl", s.Path, s.Value)
	}
	if h.DaemonPID != 0 {
		line("daemon", strconv.Itoa(h.DaemonPID), h.DaemonConf)
	}
	if h.WatcherPID != 0 {
		line("watcher", strconv.Itoa(h.WatcherPID))
	}
	if h.HasRules {
		line("nftgen", strconv.FormatUint(uint64(h.NFTGen), 10))
	}
	if h.Group != 0 {
		line("group", strconv.FormatUint(uint64(h.Group), 10))
	}
	if h.Isolate {
		line("isolate", "yes")
	}
	return []byte(b.String())
}

func yes(b bool, y, n string) string {
	if b {
		return y
	}
	return n
}

const hexDigits = "0123456789abcdef"

func hexOf(b []byte) string {
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hexDigits[c>>4], hexDigits[c&15])
	}
	return string(out)
}

func unhex(s string) ([]byte, bool) {
	if len(s)%2 != 0 {
		return nil, false
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		hi, lo := strings.IndexByte(hexDigits, s[2*i]), strings.IndexByte(hexDigits, s[2*i+1])
		if hi < 0 || lo < 0 {
			return nil, false
		}
		out[i] = byte(hi<<4 | lo)
	}
	return out, true
}

var errBadHot = errors.New("hot file: not understood")

// Parse decodes a hot file. Anything it does not understand is an error: the
// front then hands the run to the engine, which writes a new one.
//
// It takes the file apart in place, in one copy of it: each line's fields as
// strings.Fields would give them, but in an array, not a new slice each.
func Parse(b []byte) (*Hot, error) {
	s := string(b)
	body, ok := strings.CutPrefix(s, header+"\n")
	if !ok || !strings.HasSuffix(s, "\n") {
		return nil, errBadHot
	}
	h := &Hot{}
	seen := 0
	for body != "" {
		var l string
		l, body, _ = strings.Cut(body, "\n")
		k, v, _ := strings.Cut(l, " ")
		var f [3]string
		n := fields(v, &f)
		ok := true
		switch {
		case k == "key":
			h.Key = v
			seen |= 1
		case k == "network" && n == 1:
			h.Network = f[0]
			seen |= 2
		case k == "bridge" && n == 2:
			h.Bridge = f[0]
			h.Index, ok = atoi(f[1])
			seen |= 4
		case k == "mode" && n == 1:
			h.Mode = f[0]
			seen |= 8
		case k == "ports" && n == 1:
			h.AnyPorts, ok = f[0] == "any", f[0] == "any" || f[0] == "taps"
		case k == "pinned" && n == 1:
			h.Pinned, ok = f[0] == "yes", f[0] == "yes" || f[0] == "no"
		case k == "address" && n == 3:
			ip, hexOK := unhex(f[1])
			bits, bitsOK := atoi(f[2])
			ok = hexOK && bitsOK && (len(ip) == 4 || len(ip) == 16) && bits <= 8*len(ip)
			if ok {
				h.Addresses = append(h.Addresses, Address{Text: f[0], IP: ip, Bits: uint8(bits)})
			}
		case k == "sysctl" && n == 2 && strings.HasPrefix(f[0], "/proc/sys/"):
			h.Sysctls = append(h.Sysctls, Sysctl{Path: f[0], Value: f[1]})
		case k == "daemon" && n == 2:
			h.DaemonPID, ok = atoi(f[0])
			h.DaemonConf = f[1]
			ok = ok && h.DaemonPID > 0
		case k == "watcher" && n == 1:
			h.WatcherPID, ok = atoi(f[0])
			ok = ok && h.WatcherPID > 0
		case k == "isolate" && n == 1:
			h.Isolate, ok = true, f[0] == "yes"
		case k == "group" && n == 1:
			g, err := strconv.ParseUint(f[0], 10, 32)
			h.Group, ok = uint32(g), err == nil && g != 0
		case k == "nftgen" && n == 1:
			var g uint64
			g, err := strconv.ParseUint(f[0], 10, 32)
			h.NFTGen, h.HasRules, ok = uint32(g), true, err == nil
		default:
			ok = false
		}
		if !ok {
			return nil, errBadHot
		}
	}
	if seen != 15 {
		return nil, errBadHot
	}
	return h, nil
}

// fields puts the fields of v, as strings.Fields splits them, into f, and
// returns how many there are: len(f)+1 for more than f holds.
func fields(v string, f *[3]string) int {
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf { // Unicode spaces: strings.Fields' own
			all := strings.Fields(v)
			copy(f[:], all)
			return min(len(all), len(f)+1)
		}
	}
	n := 0
	for {
		v = strings.TrimLeft(v, asciiSpace)
		if v == "" {
			return n
		}
		if n == len(f) {
			return n + 1
		}
		end := strings.IndexAny(v, asciiSpace)
		if end < 0 {
			end = len(v)
		}
		f[n], v = v[:end], v[end:]
		n++
	}
}

// asciiSpace is what strings.Fields takes for space in ASCII.
const asciiSpace = "\t\n\v\f\r "

func atoi(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}
