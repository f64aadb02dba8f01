package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"

	"github.com/kvmnet/kvmnet/internal/config"
)

// checkMAC refuses --network without --host, and a bad --network.
func checkMAC(c *call) error {
	_, host := c.options["--host"]
	nw, named := c.options["--network"]
	if named && !host {
		return errors.New("--network is for --host")
	}
	if named {
		return config.CheckNetworkName(nw)
	}
	return nil
}

// runMACHost prints the [[network.NETWORK.host]] lines that give the VM
// called NAME the address --host, with the MAC `kvmnet mac NAME` gives it:
// a fixed address is then a matter of appending them and `kvmnet reload`.
// The lines are checked as the file would be with them appended, so that
// what is printed is what reload takes.
func runMACHost(c *call) (int, error) {
	name, nw := c.args[0], c.options["--network"]
	if nw == "" {
		nw = config.DefaultNetwork
	}
	ip, err := netip.ParseAddr(c.options["--host"])
	if err != nil || !ip.Is4() {
		return 0, usagef("--host %s: want an IPv4 address, like 192.168.100.10", config.Quote(c.options["--host"]))
	}
	lines := fmt.Sprintf("[[network.%s.host]]\nmac  = %q\nip   = %q\nname = %q\n", nw, GuestMAC(name), ip, name)
	path := config.Path()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read config: %w", err)
	}
	if f, err := config.Parse(path, b); f == nil {
		return 0, usageError{err.Error()}
	} else if _, err := f.Network(nw, ""); err != nil {
		return 0, usageError{err.Error()} // not defined, or broken already
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	f, err := config.Parse(path+" with these lines", append(b, lines...))
	if f == nil {
		return 0, usageError{err.Error()}
	}
	if _, err := f.Network(nw, config.NAT); err != nil {
		return 0, usageError{err.Error()}
	}
	fmt.Fprint(c.out, lines)
	return ExitOK, nil
}
