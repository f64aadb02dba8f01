package netsvc

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"time"
)

// The router advertisement on the wire (RFC 4861 4.2, options 4.6; RDNSS
// and DNSSL, RFC 8106 5.1-5.2), written here rather than by
// github.com/mdlayher/ndp: the daemon sends one fixed message and reads
// only the type of what the socket's ICMPv6 filter lets in (router
// solicitations), and ndp linked golang.org/x/net/idna, x/text's Unicode
// tables and net/url for its DNSSL checks (see docs/memory.md).

const (
	icmpRouterSolicitation  = 133
	icmpRouterAdvertisement = 134
	// ndpHopLimit is what every ND message is sent with, and what a
	// receiver checks (RFC 4861 6.1.2).
	ndpHopLimit = 255

	optSourceLLA  = 1
	optPrefixInfo = 3
	optMTU        = 5
	optRDNSS      = 25
	optDNSSL      = 31

	prefixOnLink     = 0x80
	prefixAutonomous = 0x40
)

// raOption is one option: its type and its body after the type and length
// octets; append pads it to a multiple of 8 octets.
type raOption struct {
	typ  byte
	body []byte
}

// raMessage is the RA of network c as the ICMPv6 message (checksum zero:
// the kernel fills it in on a raw ICMPv6 socket): its /64 on-link and for
// SLAAC, the gateway as default router only when the network routes (as
// DHCP's router option: nat, or dhcp_router), the DNS forwarder (RDNSS,
// DNSSL) when it runs, and the MTU when not 1500. Router preference medium,
// no M or O flag, reachable time and retransmit timer unspecified.
func raMessage(c Config, mac net.HardwareAddr) ([]byte, error) {
	var lifetime time.Duration
	if c.Router {
		lifetime = raRouterLifetime
	}
	b := []byte{icmpRouterAdvertisement, 0, 0, 0, raHopLimit, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(lifetime/time.Second))
	b = append(b, make([]byte, 8)...) // reachable time, retrans timer
	var opts []raOption
	if len(mac) == 6 {
		opts = append(opts, raOption{optSourceLLA, mac})
	}
	sub := c.Gateway6.Masked()
	if !sub.Addr().Is6() || sub.Addr().Is4In6() {
		return nil, fmt.Errorf("ra: prefix %s: want an IPv6 prefix", sub.String())
	}
	pi := []byte{byte(sub.Bits()), prefixOnLink | prefixAutonomous}
	pi = binary.BigEndian.AppendUint32(pi, uint32(raValidLifetime/time.Second))
	pi = binary.BigEndian.AppendUint32(pi, uint32(raPreferredLifetime/time.Second))
	pi = append(pi, 0, 0, 0, 0)
	pi = append(pi, sub.Addr().AsSlice()...)
	opts = append(opts, raOption{optPrefixInfo, pi})
	if c.MTU != 0 && c.MTU != 1500 {
		opts = append(opts, raOption{optMTU, binary.BigEndian.AppendUint32([]byte{0, 0}, uint32(c.MTU))})
	}
	if c.DNS {
		dnsLife := binary.BigEndian.AppendUint32([]byte{0, 0}, uint32(raDNSLifetime/time.Second))
		opts = append(opts, raOption{optRDNSS, append(dnsLife, c.Gateway6.Addr().AsSlice()...)})
		name, err := dnsName(c.Domain)
		if err != nil {
			return nil, fmt.Errorf("ra: dnssl: %w", err)
		}
		opts = append(opts, raOption{optDNSSL, append(dnsLife, name...)})
	}
	for _, o := range opts {
		b = o.append(b)
	}
	return b, nil
}

// append appends o, zero-padded to a multiple of 8 octets, to b.
func (o raOption) append(b []byte) []byte {
	n := (2 + len(o.body) + 7) / 8
	b = append(b, o.typ, byte(n))
	b = append(b, o.body...)
	return append(b, make([]byte, 8*n-2-len(o.body))...)
}

// dnsName is domain in DNS's wire format (RFC 1035 3.1): each label's length
// and octets, then the root's zero. Labels are letters, digits and hyphens
// (the configuration's domain is one), 1-63 octets, 255 in all.
func dnsName(domain string) ([]byte, error) {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return nil, fmt.Errorf("empty domain: want a name")
	}
	var b []byte
	for label := range strings.SplitSeq(domain, ".") {
		if len(label) == 0 || len(label) > 63 || !isLDH(label) {
			return nil, fmt.Errorf("domain %q: label %q: want 1-63 letters, digits or hyphens", domain, label)
		}
		b = append(append(b, byte(len(label))), label...)
	}
	if len(b)+1 > 255 {
		return nil, fmt.Errorf("domain %q: want at most 255 octets", domain)
	}
	return append(b, 0), nil
}

func isLDH(s string) bool {
	for _, r := range []byte(s) {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// isRouterSolicitation reports whether m, an ICMPv6 message any guest may
// have sent, is a router solicitation: type 133, code 0, its 8-octet
// header whole. Its options are not read: every solicitation gets the same
// multicast RA, at most every raMinDelay.
func isRouterSolicitation(m []byte) bool {
	return len(m) >= 8 && m[0] == icmpRouterSolicitation && m[1] == 0
}
