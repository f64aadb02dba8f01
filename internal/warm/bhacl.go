package warm

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The bridge helper's front may not parse the configuration file, yet it
// must know what --br=NAME names and who may use that network. The engine
// writes both, as it resolved them from the root-owned file, into the
// namespace's state directory after a run it finished (BridgeACL); the front
// uses them only while the file is still that one (the key, its identity).

// BridgeACLFile is the bridge helper's cache in the state directory. Its
// first character is one no network name starts with, so that no network's
// files (NETWORK.*, .NETWORK.*) take it for theirs.
const BridgeACLFile = "_bridge-helper.acl"

// maxACL bounds a BridgeACLFile read: a line per network.
const maxACL = 64 << 10

// aclHeader is the file's first line; another means another format.
const aclHeader = "kvmnet-bridge-helper-acl 1"

// BridgeACL is what the bridge helper's engine resolved from the
// configuration file whose identity is Key: every network --br may name.
type BridgeACL struct {
	Key      string // version and config.Stamp of the file, as the front computes them (bridgeKey)
	Networks []ACLNetwork
}

// ACLNetwork is one network of a BridgeACL, in the order the engine's
// lookup by bridge name takes them (config.File.NetworkOnBridge).
type ACLNetwork struct {
	Name string
	// ByBridge is the network's bridge when --br=BRIDGE names this network
	// (no network is called that), else "".
	ByBridge string
	Allow    []string // the resolved allow list: "@group" or "user"
}

// Marshal encodes a as the file's lines: "net NAME BRIDGE|- ALLOW...".
func (a *BridgeACL) Marshal() []byte {
	var b strings.Builder
	b.WriteString(aclHeader + "\nkey " + a.Key + "\n")
	for _, n := range a.Networks {
		br := n.ByBridge
		if br == "" {
			br = "-"
		}
		b.WriteString(strings.Join(append([]string{"net", n.Name, br}, n.Allow...), " ") + "\n")
	}
	return []byte(b.String())
}

var errBadACL = errors.New("bridge helper acl: not understood")

// ParseBridgeACL decodes a BridgeACLFile. Anything it does not understand
// is an error: the front then hands the run to the engine.
func ParseBridgeACL(b []byte) (*BridgeACL, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 3 || lines[0] != aclHeader || lines[len(lines)-1] != "" {
		return nil, errBadACL
	}
	key, ok := strings.CutPrefix(lines[1], "key ")
	if !ok || key == "" {
		return nil, errBadACL
	}
	a := &BridgeACL{Key: key}
	for _, l := range lines[2 : len(lines)-1] {
		f := strings.Split(l, " ")
		if len(f) < 3 || f[0] != "net" || !aclWord(f[1]) || !aclWord(f[2]) {
			return nil, errBadACL
		}
		n := ACLNetwork{Name: f[1], ByBridge: f[2], Allow: f[3:]}
		if n.ByBridge == "-" {
			n.ByBridge = ""
		}
		for _, e := range n.Allow {
			if !aclWord(strings.TrimPrefix(e, "@")) {
				return nil, errBadACL
			}
		}
		a.Networks = append(a.Networks, n)
	}
	return a, nil
}

// aclWord is a word of the file: a network, bridge or account name, none of
// which holds a space, a colon or a control character.
func aclWord(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ':' || c == '/' {
			return false
		}
	}
	return true
}

// Network returns the network --br=br names, as the engine's bridgeNetwork
// decides: a network of that name, else the one whose bridge it is.
func (a *BridgeACL) Network(br string) (ACLNetwork, bool) {
	for _, n := range a.Networks {
		if n.Name == br {
			return n, true
		}
	}
	for _, n := range a.Networks {
		if n.ByBridge != "" && n.ByBridge == br {
			return n, true
		}
	}
	return ACLNetwork{}, false
}

// The accounts files, read as the engine's os/user reads them (a static
// binary: no NSS module).
const (
	passwdFile = "/etc/passwd"
	groupFile  = "/etc/group"
	maxAccount = 4 << 20
)

// readSized reads the file at path, never through a link, into a buffer of
// its size: at most limit bytes. (readSmall's buffer of the limit would cost
// more to allocate than the read of a file of accounts.) A file that fits in
// buf, when given (the run's, see newBuf), is read into it, and is then
// valid until buf's next use. A read of a regular file returns less than
// asked only at its end (see readSmall).
func readSized(path string, limit int64, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// Most such files fit a page: read one first, and the size only if not.
	page := buf
	if page == nil {
		page = make([]byte, 4096)
	}
	n, err := unix.Read(fd, page)
	if err == nil && n < len(page) {
		return page[:n], nil
	}
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Size > limit {
		return nil, errTooLong
	}
	b := make([]byte, 0, st.Size+1)
	for {
		n, err := unix.Read(fd, b[len(b):cap(b)])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, err
		case n == 0:
			return b, nil
		}
		if b = b[:len(b)+n]; len(b) == cap(b) {
			return nil, errTooLong // grew since the fstat
		}
	}
}

// colonLookup returns the fields of the first entry of an /etc/passwd-like
// (cols 6) or /etc/group-like (cols 3) file whose field idx is value, with
// os/user's rules (lookup_unix.go): lines trimmed of space, blank lines and
// #comments skipped, at least cols colons, a name that is not empty and
// does not start with + or -, and numeric ids (field 2, and 3 in passwd).
func colonLookup(b []byte, value string, idx, cols int) ([]string, bool) {
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		// Only a line whose field idx is value becomes strings: a user's
		// run reads the whole of /etc/group, a string or two a line.
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' || bytes.Count(line, colon) < cols || string(field(line, idx)) != value {
			continue
		}
		parts := strings.SplitN(string(line), ":", cols+1)
		if parts[0] == "" || parts[0][0] == '+' || parts[0][0] == '-' {
			continue
		}
		if _, err := strconv.Atoi(parts[2]); err != nil {
			continue
		}
		if cols == 6 {
			if _, err := strconv.Atoi(parts[3]); err != nil {
				continue
			}
		}
		return parts, true
	}
	return nil, false
}

var colon = []byte{':'}

// field returns field idx of a line with more than idx colons, as
// strings.SplitN(line, ":", n) gives it for any n > idx+1.
func field(line []byte, idx int) []byte {
	for range idx {
		line = line[bytes.IndexByte(line, ':')+1:]
	}
	return line[:bytes.IndexByte(line, ':')]
}

// caller is who runs the bridge helper: its real ids and groups.
type caller struct {
	uid, gid int
	groups   []int
}

// accountFiles reads /etc/passwd and /etc/group once each, when first asked.
type accountFiles struct {
	passwd, group []byte
	read          int // bit 1: passwd read, bit 2: group read
}

func (f *accountFiles) file(bit int, path string, into *[]byte) []byte {
	if f.read&bit == 0 {
		f.read |= bit
		*into, _ = readSized(path, maxAccount, nil) // unread: no name found, the engine decides
	}
	return *into
}

// id returns the id of a user or group name.
func (f *accountFiles) id(name string, group bool) (int, bool) {
	var fields []string
	var ok bool
	if group {
		fields, ok = colonLookup(f.file(2, groupFile, &f.group), name, 0, 3)
	} else {
		fields, ok = colonLookup(f.file(1, passwdFile, &f.passwd), name, 0, 6)
	}
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(fields[2])
	return id, err == nil
}

// allowed reports whether who may use a network with allow list allow, as
// the engine's permitted decides: root always; a "user" entry by the real
// uid, a "@group" entry by the real gid or a supplementary group. It only
// ever says yes for sure: no means the engine decides, and says why.
func (who caller) allowed(allow []string, acc *accountFiles) bool {
	if who.uid == 0 {
		return true
	}
	for _, a := range allow {
		if g, isGroup := strings.CutPrefix(a, "@"); isGroup {
			if gid, ok := acc.id(g, true); ok && (gid == who.gid || slices.Contains(who.groups, gid)) {
				return true
			}
		} else if uid, ok := acc.id(a, false); ok && uid == who.uid {
			return true
		}
	}
	return false
}

// String is the caller as the engine logs it: "alice (uid 1001)", or
// "uid 1001" for a uid /etc/passwd does not name.
func (who caller) String(acc *accountFiles) string {
	id := strconv.Itoa(who.uid)
	if f, ok := colonLookup(acc.file(1, passwdFile, &acc.passwd), id, 2, 6); ok {
		return f[0] + " (uid " + id + ")"
	}
	return "uid " + id
}
