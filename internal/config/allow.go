package config

import (
	"fmt"
	"strings"
)

// Allowed is one entry of a network's allow list: "@group" (members of the
// group) or "user" (that user), by name as /etc/group and /etc/passwd give
// them. The list says who may use the network through kvmnet-bridge-helper,
// the setuid helper that ordinary users' QEMU runs; root always may.
type Allowed string

// DefaultAllowGroup is the group whose members may use the default network
// when the file gives it no allow list: the group that may use /dev/kvm.
const DefaultAllowGroup = "kvm"

// Group returns the group an entry names, ok false when it names a user.
func (a Allowed) Group() (name string, ok bool) { return strings.CutPrefix(string(a), "@") }

// UnmarshalText accepts "@group" or "user": a POSIX-portable name (letters,
// digits, '.', '_', '-', not starting with '-'), at most 32 bytes.
func (a *Allowed) UnmarshalText(b []byte) error {
	name, _ := strings.CutPrefix(string(b), "@")
	if !validAccountName(name) {
		return fmt.Errorf("allow %s: want \"@group\" or \"user\", a name of letters, digits, '.', '_' and '-'", Quote(string(b)))
	}
	*a = Allowed(b)
	return nil
}

func validAccountName(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// allowed is the network's allow list with the default filled in: the
// default network is open to group kvm, any other to root only.
func (n *Network) allowed() []Allowed {
	switch {
	case n.Allow != nil:
		return n.Allow
	case n.Name == DefaultNetwork:
		return []Allowed{"@" + DefaultAllowGroup}
	}
	return []Allowed{}
}
