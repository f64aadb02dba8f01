package netsvc

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// TestMain lets the test binary act as the daemon: Start re-executes it with
// argv[0] = ctl.ProcName, exactly as it starts the kvmnet-netsvc binary.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == ctl.ProcName {
		os.Exit(Main(os.Args))
	}
	os.Exit(m.Run())
}

var (
	testGW     = netip.MustParseAddr("192.168.100.1")
	testStatic = Host{MAC: mustMAC("52:54:00:00:00:99"), IP: netip.MustParseAddr("192.168.100.99"), Name: "fixed"}
)

// testConfig is a /24 network with one static host, defaults filled.
func testConfig() Config {
	c := Config{
		Network: "test", Bridge: "br0", Gateway: netip.MustParsePrefix("192.168.100.1/24"),
		DHCP: true, Router: true, DNS: true, Hosts: []Host{testStatic},
	}
	c.Defaults()
	return c
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// macN is a distinct locally administered MAC for simulated client n.
func macN(n int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x01, byte(n >> 16), byte(n >> 8), byte(n)}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testLog logs to t, so a failing test shows what the server said.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b))
	return len(b), nil
}

// newReq builds a client message of type mt from mac.
func newReq(t testing.TB, mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	all := append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt)}, mods...)
	m, err := dhcpv4.New(all...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func optReqIP(ip netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice()))
}

func optServerID(ip netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip.AsSlice()))
}

func withCiaddr(ip netip.Addr) dhcpv4.Modifier { return dhcpv4.WithClientIP(ip.AsSlice()) }

func withHostname(h string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptHostName(h))
}

// fixedClock is a settable clock for pool and handler tests.
type fixedClock struct{ t time.Time }

func (c *fixedClock) now() time.Time         { return c.t }
func (c *fixedClock) add(d time.Duration)    { c.t = c.t.Add(d) }
func newClock() *fixedClock                  { return &fixedClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func addrOf(ip net.IP) netip.Addr            { return ip4(ip) }
func mt(m *dhcpv4.DHCPv4) dhcpv4.MessageType { return m.MessageType() }

// spawn starts the daemon and waits until it is ready, as an up does.
func spawn(exe, configPath, logPath string) (int, error) {
	p, err := ctl.Start(exe, configPath, logPath)
	if err != nil {
		return 0, err
	}
	return p.Wait()
}
