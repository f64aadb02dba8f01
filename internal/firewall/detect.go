package firewall

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/kvmnet/kvmnet/internal/nat"
)

// Host is what Choose and the nftables runner look at; the zero value is the
// machine's own. Tests point it elsewhere to play a host without iptables.
type Host struct {
	// Dirs are where the iptables programs are looked for; nil means the
	// system's own directories, as package nat looks (never PATH: a
	// capability-holding caller must not run a user's program).
	Dirs []string
	// Proc is where procfs is mounted; "" means /proc.
	Proc string
}

// Choose returns the backend for a network coming up, given the
// configuration's choice, and why it is that one. It execs nothing.
//
// auto follows what the host already uses, as tailscale's linuxfw detector
// does, but decides from the kernel rather than by counting rules:
//   - no iptables program: nftables (there is nothing else to drive);
//   - legacy x_tables in use in this namespace (/proc/net/ip_tables_names
//     lists a table: iptables-legacy, or Docker's, made one) and `iptables`
//     is iptables-legacy: iptables, so that kvmnet's rules sit in the tables
//     the host uses, ahead of their drops;
//   - otherwise nftables: iptables-nft's tables are nf_tables, visible over
//     netlink, so the shim needs no exec; with no rules at all nothing is in
//     the way; and with legacy tables but `iptables` driving nf_tables, the
//     iptables backend would write where the legacy drops still win, while
//     the nftables backend's shim reaches them with iptables-legacy.
func (h Host) Choose(choice Backend) (Backend, string, error) {
	switch choice {
	case NFTables, IPTables:
		return choice, "firewall = \"" + string(choice) + "\"", nil
	case Auto, "":
	default:
		return "", "", fmt.Errorf("firewall %q: want auto, nftables or iptables", choice)
	}
	if h.lookPath("iptables") == "" {
		return NFTables, "auto: no iptables program", nil
	}
	names := h.legacyTables()
	switch {
	case len(names) == 0:
		return NFTables, "auto: no legacy iptables tables", nil
	case nat.IptablesVariant(h.lookPath("iptables")) == "legacy":
		return IPTables, "auto: iptables-legacy in use (" + string(bytes.Join(names, []byte(","))) + ")", nil
	}
	return NFTables, "auto: legacy tables in use but iptables is iptables-nft", nil
}

// Choose is Host{}.Choose.
func Choose(choice Backend) (Backend, string, error) { return Host{}.Choose(choice) }

// lookPath returns where the program name is in h's directories, "" when nowhere.
func (h Host) lookPath(name string) string {
	dirs := h.Dirs
	if dirs == nil {
		dirs = nat.ToolDirs()
	}
	p, err := nat.FindTool(dirs, name)
	if err != nil {
		return ""
	}
	return p
}

// legacyTables lists the x_tables (iptables-legacy) tables of the calling
// thread's network namespace: `cat /proc/net/ip_tables_names`. The file is
// there only once ip_tables is loaded, and lists only tables that exist.
// /proc/net is the main thread's namespace; thread-self/net is this thread's.
func (h Host) legacyTables() [][]byte {
	dir := "/proc/thread-self/net"
	if h.Proc != "" {
		dir = filepath.Join(h.Proc, "net")
	}
	b, err := os.ReadFile(filepath.Join(dir, "ip_tables_names"))
	if err != nil {
		return nil
	}
	return bytes.Fields(b)
}

// legacyFilter reports whether legacy iptables has a filter table here.
func (h Host) legacyFilter() bool {
	return slices.ContainsFunc(h.legacyTables(), func(t []byte) bool { return string(t) == "filter" })
}
