// Package state keeps what kvmnet did to the host, so that the last VM's down
// undoes exactly that and nothing else, and the locks that serialise helpers.
//
// It lives in /run/kvmnet, which a reboot clears together with the bridges and
// rules it describes, in one directory per network namespace, because bridges
// and rules are per namespace and a host that runs QEMU in several namespaces
// must not mix them up. The directory is named by the namespace's cookie, not
// its inode: the kernel reuses the inode of a deleted namespace, and a new
// namespace would then inherit a dead one's records; a cookie is never reused
// until reboot.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/safefile"
)

// Root is the parent of every namespace's state directory.
const Root = "/run/kvmnet"

// Dir is the state directory of the caller's network namespace.
type Dir struct {
	Path string
	// LockWait bounds how long Lock waits for a lock another run holds; zero
	// waits as long as it takes. The libvirt hook sets it: libvirt waits on
	// the hook, and a hook must never wedge libvirtd.
	LockWait time.Duration
}

// Open returns the state directory of the calling thread's network namespace, making it if needed.
func Open() (Dir, error) {
	path, err := Path()
	if err != nil {
		return Dir{}, err
	}
	d := Dir{Path: path}
	for _, dir := range []string{Root, d.Path} {
		if err := ensureDir(dir); err != nil {
			return Dir{}, err
		}
	}
	return d, nil
}

// Path is the state directory of the calling thread's network namespace,
// which Open opens, whether it exists or not.
func Path() (string, error) {
	cookie, err := netnsCookie()
	if err != nil {
		return "", err
	}
	return filepath.Join(Root, "netns-"+strconv.FormatUint(cookie, 10)), nil
}

// ensureDir makes the directory path (0755) if it is missing, and refuses one
// that someone else could have planted or could write to: a symbolic link, not
// a directory, owned by a user other than root or the caller, or writable by
// group or others. Once Root and the namespace's directory pass, only their
// owner can add, swap or remove a file in them, so the files inside need no
// check of their own beyond not following a link (package safefile).
func ensureDir(path string) error {
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdir(path, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("make state directory %s: %w", path, err)
		}
		err = unix.Lstat(path, &st)
	}
	if err != nil {
		return fmt.Errorf("state directory %s: %w", path, err)
	}
	switch euid := uint32(os.Geteuid()); {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("state directory %s: %w (remove it)", path, safefile.ErrSymlink)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("state directory %s: not a directory (remove it)", path)
	case st.Uid != 0 && st.Uid != euid:
		return fmt.Errorf("state directory %s: owned by uid %d, not root: refused (remove it)", path, st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("state directory %s: writable by group or others (mode %04o): refused (chmod 755 it)", path, st.Mode&0o7777)
	}
	return nil
}

// netnsCookie returns the calling thread's network namespace cookie (Linux ≥ 5.14).
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("identify network namespace: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("identify network namespace (needs Linux 5.14 or later): %w", err)
	}
	return c, nil
}

// Lock is an exclusive flock on a file in the state directory; the kernel
// drops it when the process dies, so a killed helper never wedges a network.
type Lock struct{ f *os.File }

// Lock takes the lock called name (a network's name, or "forwarding"), waiting for it.
func (d Dir) Lock(name string) (*Lock, error) {
	f, err := safefile.Open(filepath.Join(d.Path, name+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err = flock(f, d.LockWait); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock, unless a process it was handed to (File) still
// holds it: close(2) drops an flock only with the last descriptor of its
// open file description.
func (l *Lock) Unlock() { l.f.Close() }

// File is the lock's open file, for a child process (its descriptor 3) to
// go on holding the lock after this process ends: an flock belongs to the
// open file description, which the child's copy of the descriptor shares.
func (l *Lock) File() *os.File { return l.f }

// Adopt takes the lock called name through descriptor fd, which the process
// inherited from the run that handed the lock over (Lock.File). When fd is
// not that lock's file (not open, another file), it takes the lock as Lock
// does, and leaves fd alone. Either way it waits while another run holds the
// lock; through fd it is held already, and the flock returns at once. fd is
// closed on exec, so that nothing this process starts holds the lock beyond it.
//
//	flock -x 3
func (d Dir) Adopt(name string, fd int) (*Lock, error) {
	var got, want unix.Stat_t
	if unix.Fstat(fd, &got) != nil || unix.Lstat(filepath.Join(d.Path, name+".lock"), &want) != nil ||
		got.Dev != want.Dev || got.Ino != want.Ino || want.Mode&unix.S_IFMT != unix.S_IFREG {
		return d.Lock(name)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), name+".lock")
	if err := flock(f, d.LockWait); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return &Lock{f: f}, nil
}

// Network records what kvmnet set up for one network, and whether it owns each part.
//
// It is a journal: an up sets a part's flag and writes the record, naming the
// change in Doing, before it makes the change, so a flag means "kvmnet made
// this, or was about to". The lock is an flock, free once a helper dies, so a
// record read under it with Doing set is an up that was killed halfway: the
// next up finishes it, and a down, gc or `kvmnet down` undoes every flagged
// part, each undo being harmless for a part that was never made.
type Network struct {
	Name        string       `json:"name"`
	Bridge      string       `json:"bridge"`
	Mode        string       `json:"mode"`
	Gateway     netip.Prefix `json:"gateway,omitzero"`
	BridgeIndex int          `json:"bridge_index"`
	MadeBridge  bool         `json:"made_bridge"`         // kvmnet created the bridge: the last down deletes it
	MadeAddress bool         `json:"made_address"`        // kvmnet added the gateway address
	Forwarding  bool         `json:"forwarding"`          // this network holds a use of ip_forward
	Rules       bool         `json:"rules"`               // kvmnet's rules for this network are installed
	Services    bool         `json:"services"`            // the DHCP/DNS daemon runs
	RulesGen    uint32       `json:"rules_gen,omitempty"` // nf_tables generation when the rules were last seen whole
	Pinned      bool         `json:"pinned,omitempty"`    // `kvmnet up` made it: it outlives its last VM until `kvmnet down`
	Firewall    string       `json:"firewall,omitempty"`  // the rule engine its rules are in: nftables or iptables ("": iptables, from before the choice)
	Doing       string       `json:"doing,omitempty"`     // the change an up was making when it wrote the record
	// TearingDown: a last down stopped the network serving and left the
	// rest of the teardown (Doing names it) to a child holding the lock; a
	// run that finds the record so, the child killed, finishes the teardown.
	TearingDown bool   `json:"tearing_down,omitempty"`
	AllowFrom   string `json:"allow_from,omitempty"` // bridges, comma-separated, whose guests the rules let in (allow_from)
	Peers       string `json:"peers,omitempty"`      // bridges, comma-separated, the rules shut out (config.Net.Peers)
	Shaped      bool   `json:"shaped,omitempty"`     // a port was given bandwidth limits: the teardown sweeps ifbs
	Resolved    bool   `json:"resolved,omitempty"`   // systemd-resolved sends the domain's queries to the gateway, on the bridge

	// HostQuiet: kvmnet set the bridge's arp_ignore and disable_ipv6, so that
	// the host answers no ARP or NDP on an isolated bridge. On a bridge kvmnet
	// did not make, the values it found are kept to be put back.
	HostQuiet        bool   `json:"host_quiet,omitempty"`
	SavedArpIgnore   string `json:"saved_arp_ignore,omitempty"`
	SavedDisableIPv6 string `json:"saved_disable_ipv6,omitempty"`

	// IPv6 (address6), when the network has it.
	Gateway6     netip.Prefix `json:"gateway6,omitzero"`
	MadeAddress6 bool         `json:"made_address6,omitempty"` // kvmnet added the IPv6 gateway address
	Forwarding6  bool         `json:"forwarding6,omitempty"`   // this network holds a use of IPv6 forwarding
	// ConfigHash identifies the configuration the network last applied (its
	// forwards and its daemon's settings): an up whose configuration hashes
	// otherwise applies it, as `kvmnet reload` does.
	ConfigHash string `json:"config_hash,omitempty"`
	// RouteLocalnet: kvmnet turned on route_localnet on the bridge (for
	// forwards from 127.0.0.1); the last down turns it off again.
	RouteLocalnet bool `json:"route_localnet,omitempty"`

	// FirewalldZone: kvmnet bound the bridge to this firewalld zone; the
	// last down takes it out again.
	FirewalldZone string `json:"firewalld_zone,omitempty"`

	// The VXLAN link of a network that spans hypervisors, a port of its bridge.
	VXLAN      string `json:"vxlan,omitempty"`       // its name
	VXLANIndex int    `json:"vxlan_index,omitempty"` // its ifindex: a link of that name with another is not kvmnet's
	MadeVXLAN  bool   `json:"made_vxlan,omitempty"`  // kvmnet created it: the last down deletes it
	// VXLANGuard is whose datagrams the rules let through to the VXLAN's
	// port: "VNI PORT PEER,PEER…" ("": the network has no VXLAN).
	VXLANGuard string `json:"vxlan_guard,omitempty"`

	// RulesVersion is the kvmnet version (version.Version) that last made
	// the network's rules whole; "" in a record of a release before it.
	// Another version's rules may differ from this one's: the next up
	// rewrites them, and doctor says whose they are rather than "missing".
	RulesVersion string `json:"rules_version,omitempty"`
}

// Forward is a port forward as recorded: host ports First-Last (on HostIP,
// or on every host address when it is invalid) to Guest's ports from GuestPort.
// A network's forwards live in a file of their own (LoadForwards,
// SaveForwards), not in its record: decoding a hundred of them costs more
// than a warm up's whole record, and a warm up needs them only when it
// rewrites the rules.
type Forward struct {
	Proto     string     `json:"proto"`
	HostIP    netip.Addr `json:"host_ip,omitzero"`
	First     uint16     `json:"first"`
	Last      uint16     `json:"last"`
	Guest     netip.Addr `json:"guest"`
	GuestPort uint16     `json:"guest_port"`
}

// forwardsExt is the extension of a network's forwards file.
const forwardsExt = ".forwards.json"

// LoadForwards returns the forwards recorded for network name (none when
// there is no file).
func (d Dir) LoadForwards(name string) ([]Forward, error) {
	var fs []Forward
	_, err := d.ReadJSON(name+forwardsExt, &fs)
	return fs, err
}

// SaveForwards records network name's forwards; none removes the file.
func (d Dir) SaveForwards(name string, fs []Forward) error {
	if len(fs) == 0 {
		return d.RemoveFile(name + forwardsExt)
	}
	return d.WriteJSON(name+forwardsExt, fs)
}

// Owns reports whether the record names anything kvmnet made (or was about
// to make) that a teardown must undo.
func (n Network) Owns() bool {
	return n.MadeBridge || n.MadeAddress || n.Forwarding || n.Rules || n.Services || n.HostQuiet || n.MadeVXLAN ||
		n.MadeAddress6 || n.Forwarding6 || n.RouteLocalnet || n.FirewalldZone != ""
}

func (d Dir) file(name, ext string) string { return filepath.Join(d.Path, name+ext) }

// Load returns the record of a network; ok is false when there is none.
func (d Dir) Load(name string) (n Network, ok bool, err error) {
	ok, err = d.ReadJSON(name+".json", &n)
	return n, ok, err
}

// Save writes the record of a network.
func (d Dir) Save(n Network) error { return d.WriteJSON(n.Name+".json", n) }

// ReadJSON decodes the state file called name into v; ok is false when there is none.
func (d Dir) ReadJSON(name string, v any) (ok bool, err error) {
	path := filepath.Join(d.Path, name)
	b, err := safefile.ReadFile(path, maxRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("read state %s: %w", path, err)
	}
	return true, nil
}

// WriteJSON writes v to the state file called name atomically: a reader never sees half of it.
func (d Dir) WriteJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return writeAtomic(filepath.Join(d.Path, name), b)
}

// RemoveFile removes the state file called name; one already gone is not an error.
func (d Dir) RemoveFile(name string) error {
	if err := os.Remove(filepath.Join(d.Path, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove state: %w", err)
	}
	return nil
}

// Remove deletes the record of a network and every other file of it (port
// list, daemon files, and half-written copies a killed helper left: the
// daemon's start as ".NAME.*.tmp…") but its lock, which a waiting helper may
// hold open.
func (d Dir) Remove(name string) error {
	files, err := filepath.Glob(filepath.Join(d.Path, name+".*"))
	if err != nil {
		return fmt.Errorf("remove state: %w", err)
	}
	temps, _ := filepath.Glob(filepath.Join(d.Path, "."+name+".*"))
	files = append(files, temps...)
	// The record goes last: a remove cut short leaves it, and with it the
	// network for gc to find and finish.
	record := d.file(name, ".json")
	for _, f := range files {
		if strings.HasSuffix(f, ".lock") || f == record {
			continue
		}
		if err := os.RemoveAll(f); err != nil {
			return fmt.Errorf("remove state: %w", err)
		}
	}
	if err := os.Remove(record); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove state: %w", err)
	}
	return nil
}

// Networks lists the networks that have a record.
func (d Dir) Networks() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(d.Path, "*.json"))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m))
	for _, p := range m {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		if CheckName(name) == nil { // other state files carry a second dot
			names = append(names, name)
		}
	}
	return names, nil
}

// HalfWritten lists the networks that have a half-written record and no
// record: a helper was killed while it wrote its first. Nothing was changed
// for them yet (the record comes first), but the file is left to remove.
func (d Dir) HalfWritten() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(d.Path, "*.json.tmp*"))
	if err != nil {
		return nil, err
	}
	hidden, _ := filepath.Glob(filepath.Join(d.Path, ".*.json.tmp*")) // os.CreateTemp-style names
	var names []string
	for _, p := range append(m, hidden...) {
		name, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(p), "."), ".json.tmp")
		if _, err := os.Lstat(d.file(name, ".json")); CheckName(name) == nil && errors.Is(err, fs.ErrNotExist) && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// Path returns the path of a per-network file with the given extension, e.g. ".netsvc.json".
func (d Dir) File(network, ext string) string { return d.file(network, ext) }

// maxRecord bounds a state record read into memory; a real one is a few hundred bytes.
const maxRecord = 1 << 20

func writeAtomic(path string, b []byte) error { return safefile.WriteAtomic(path, b, 0o644) }

// CheckName refuses a name that could escape the state directory or collide
// with kvmnet's own files; network names are checked properly by config.
func CheckName(name string) error {
	if name == "" || strings.ContainsAny(name, "./") {
		return fmt.Errorf("state name %q: invalid", name)
	}
	return nil
}
