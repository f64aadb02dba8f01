package netsvc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
)

// resolvConfServers returns the nameservers of a resolv.conf as "ip:port":
// the address of each `nameserver` line (resolv.conf(5); like glibc's, a
// line whose address does not parse is skipped). A loopback stub such as
// 127.0.0.53 is kept: the daemon runs on the host, where the stub answers,
// unlike inside a guest.
func resolvConfServers(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 || string(f[0]) != "nameserver" {
			continue // comments (# and ;) and the other keywords too
		}
		if a, err := netip.ParseAddr(string(f[1])); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53).String())
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no nameserver line in " + path)
	}
	return out, nil
}
