package netsvc

import (
	"errors"
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// resolvConfServers returns the nameservers of a resolv.conf as "ip:port".
// A loopback stub such as 127.0.0.53 is kept: the daemon runs on the host,
// where the stub answers, unlike inside a guest.
func resolvConfServers(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, errors.New("no nameserver line in " + path)
	}
	return out, nil
}
