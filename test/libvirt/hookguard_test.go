package libvirt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/portguard"
	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// The hook puts libvirt's taps under the network's guard, isolation and
// bandwidth at `start`, as a VM's up does its own tap, and never a link that
// is not a tap on the network's bridge.

const guardedConf = `[network.lab]
bridge = "kvlab0"
mode = "nat"
address = "10.77.0.1/24"
dhcp = false
dns = false
` + guardedKeys

const guardedKeys = `isolate_guests = true
bandwidth = { in = "20mbit", out = "10mbit" }
`

// domainXML is domain g1 with one <interface type='bridge'> on br per tap.
func domainXML(br string, taps ...string) string {
	var ifs strings.Builder
	for _, tap := range taps {
		fmt.Fprintf(&ifs, `<interface type='bridge'><source bridge='%s'/><target dev='%s'/><model type='virtio'/></interface>`, br, tap)
	}
	return `<domain type='qemu' id='3'><name>g1</name><uuid>` + hookUUID + `</uuid><devices>` + ifs.String() + `</devices></domain>`
}

// portOf is what the test reads of a link: its group, whether it is an
// isolated bridge port, and its root qdisc's kind.
func portOf(h *testns.NS, link string) (group string, isolated bool, qdisc string) {
	d := h.MustRun("ip", "-d", "link", "show", link)
	if f := strings.Fields(d[strings.Index(d, " group ")+1:]); len(f) > 1 {
		group = f[1]
	}
	q := strings.Fields(h.MustRun("tc", "qdisc", "show", "dev", link, "root"))
	if len(q) > 1 {
		qdisc = q[1]
	}
	return group, strings.Contains(d, "isolated on"), qdisc
}

func TestHookGuardsTaps(t *testing.T) {
	testhost.LoadIfb(t)
	h := testhost.New(t, bin, guardedConf)
	l := &lab{t: t}
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	l.hookMust(h, "prepare", domainXML("kvlab0", "vnet7"))
	// libvirt's tap (down, with a noqueue root qdisc: libvirt sets it up only
	// once QEMU runs); an
	// uplink the XML names (a veth); a tap on another bridge.
	h.MustRun("ip", "tuntap", "add", "vnet7", "mode", "tap")
	h.MustRun("ip", "link", "set", "vnet7", "master", "kvlab0")
	h.MustRun("tc", "qdisc", "add", "dev", "vnet7", "root", "noqueue") // as libvirt 6.0 on does
	h.MustRun("ip", "link", "add", "up7", "type", "veth", "peer", "name", "up7p")
	h.MustRun("ip", "link", "set", "up7", "master", "kvlab0", "up")
	h.MustRun("ip", "link", "add", "brx", "type", "bridge")
	h.MustRun("ip", "tuntap", "add", "vnet9", "mode", "tap")
	h.MustRun("ip", "link", "set", "vnet9", "master", "brx")
	xml := domainXML("kvlab0", "vnet7", "up7", "vnet9")
	out := l.hookMust(h, "start", xml)
	// The network's daemon guards a tap that arrives outside the group (a
	// hot-plugged NIC's, docs/guard.md): it may have isolated vnet7 first.
	if !strings.Contains(out, "record vnet7,record up7,record vnet9,") || !strings.Contains(out, "limit vnet7 (in 20Mbit, out 10Mbit)") {
		t.Errorf("start logged %q", out)
	}
	want := fmt.Sprint(int32(portguard.Group("lab"))) // as ip prints it
	if g, iso, q := portOf(h.NS, "vnet7"); g != want || !iso || q != "htb" {
		t.Errorf("vnet7: group %s, isolated %v, root qdisc %q; want group %s, isolated, htb", g, iso, q, want)
	}
	for _, other := range []string{"up7", "vnet9"} {
		if g, iso, q := portOf(h.NS, other); g != "default" || iso || q == "htb" {
			t.Errorf("%s, no tap of the network's bridge, was touched: group %s, isolated %v, root qdisc %q", other, g, iso, q)
		}
	}
	if ifbs := h.MustRun("ip", "-br", "link", "show", "type", "ifb"); strings.Count(ifbs, "\n") != 1 {
		t.Errorf("want one ifb (vnet7's), have:\n%s", ifbs)
	}
	// reconnect (libvirtd restarted) finds it all in place.
	l.hookMust(h, "reconnect", xml)
	if g, iso, q := portOf(h.NS, "vnet7"); g != want || !iso || q != "htb" {
		t.Errorf("after reconnect vnet7: group %s, isolated %v, root qdisc %q", g, iso, q)
	}
	// A tap release finds still there is given back its group and qdiscs;
	// one gone leaves its ifb, which release deletes.
	h.MustRun("ip", "link", "set", "vnet7", "down")
	out = l.hookMust(h, "release", xml)
	if g, _, q := portOf(h.NS, "vnet7"); g != "default" || q == "htb" {
		t.Errorf("after release vnet7 keeps group %s, root qdisc %q", g, q)
	}
	if !strings.Contains(out, "delete kvifb") {
		t.Errorf("release logged %q, want the ifb's deletion", out)
	}
	if ifbs := h.MustRun("ip", "-br", "link", "show", "type", "ifb"); ifbs != "" {
		t.Errorf("ifbs left after release:\n%s", ifbs)
	}
	for _, link := range []string{"vnet7", "up7", "vnet9", "brx"} {
		h.MustRun("ip", "link", "del", link)
	}
	// The tap kept the network up past release; it goes as any network
	// whose ports are gone does.
	if out, err := operator(h, "down", "lab"); err != nil {
		t.Fatalf("kvmnet down lab: %v\n%s", err, out)
	}
	h.AssertClean(rules, fwd)
}

// A domain's end deletes its taps before `release`: release deletes their
// ifbs, and the network goes with its last domain.
func TestHookReleaseGoneTap(t *testing.T) {
	testhost.LoadIfb(t)
	h := testhost.New(t, bin, guardedConf)
	l := &lab{t: t}
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	xml := domainXML("kvlab0", "vnet7")
	l.hookMust(h, "prepare", xml)
	h.MustRun("ip", "tuntap", "add", "vnet7", "mode", "tap")
	h.MustRun("ip", "link", "set", "vnet7", "master", "kvlab0", "up")
	l.hookMust(h, "start", xml)
	h.MustRun("ip", "link", "del", "vnet7")
	out := l.hookMust(h, "release", xml)
	if !strings.Contains(out, "delete kvifb") || !strings.Contains(out, "delete bridge kvlab0") {
		t.Errorf("release logged %q", out)
	}
	h.AssertClean(rules, fwd)
}

// hookGuards: a domain that libvirtd starts on a guarded, isolated, shaped
// network has its tap in the network's group, isolated and limited once
// `virsh create` returns, and its end leaves nothing (its ifb included). The
// guest boots but is not waited for: what the hook did is on the host.
func hookGuards(l *lab) {
	t := l.t
	testhost.LoadIfb(t)
	conf := "[network.lab]\nbridge = \"kvlab0\"\naddress = \"10.78.0.1/24\"\n" + guardedKeys
	l.inLibvirt("sh", "-c", "printf '%s' \"$1\" >>/etc/kvmnet/kvmnet.toml", "-", conf)
	if err := appendFile(filepath.Join(l.dir, "kvmnet.toml"), conf); err != nil {
		t.Fatal(err)
	}
	l.start(guest{name: "g1", iface: bridgeIface("kvlab0")})
	ports := strings.Fields(l.host.MustRun("ip", "-br", "link", "show", "master", "kvlab0"))
	if len(ports) == 0 {
		t.Fatal("no port on kvlab0 after virsh create")
	}
	tap, _, _ := strings.Cut(ports[0], "@")
	want := fmt.Sprint(int32(portguard.Group("lab")))
	if g, iso, q := portOf(l.host, tap); g != want || !iso || q != "htb" {
		t.Errorf("libvirt's %s: group %s, isolated %v, root qdisc %q; want group %s, isolated, htb\n%s",
			tap, g, iso, q, want, l.host.MustRun("ip", "-d", "link", "show", tap))
	}
	if ifbs := l.host.MustRun("ip", "-br", "link", "show", "type", "ifb"); strings.Count(ifbs, "\n") != 1 {
		t.Errorf("want one ifb (%s's), have:\n%s", tap, ifbs)
	}
	l.destroy("g1")
	l.restored()
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

// A tap that cannot be limited at `start` fails the start (libvirt then
// refuses the domain and runs release): the guest never runs unguarded, and
// the tap is left as it was before the start: as libvirt made it, but in
// the guard's group, where the network's daemon put it as it arrived
// outside it (docs/guard.md).
func TestHookStartFailsClosed(t *testing.T) {
	testhost.LoadIfb(t)
	h := testhost.New(t, bin, guardedConf)
	l := &lab{t: t}
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	xml := domainXML("kvlab0", "vnet7")
	l.hookMust(h, "prepare", xml)
	h.MustRun("ip", "tuntap", "add", "vnet7", "mode", "tap")
	h.MustRun("ip", "link", "set", "vnet7", "master", "kvlab0")
	want := fmt.Sprint(int32(portguard.Group("lab")))
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if g, _, _ := portOf(h.NS, "vnet7"); g == want {
			break
		}
	}
	// A link by the name of vnet7's ifb: the limit's step cannot make it.
	idx := strings.TrimSpace(h.MustRun("cat", "/sys/class/net/vnet7/ifindex"))
	h.MustRun("ip", "link", "add", "kvifb"+idx, "type", "bridge")
	out, err := runHook(h, "start", xml)
	t.Logf("start: %v: %s", err, out)
	if err == nil || !strings.Contains(out, "network lab: the taps of domain g1: limit vnet7") {
		t.Errorf("start with vnet7's ifb taken: %v, output %q", err, out)
	}
	if g, _, q := portOf(h.NS, "vnet7"); g != want || q == "htb" {
		t.Errorf("vnet7 after the failed start: group %s, root qdisc %q; want as before the start: group %s, no htb", g, q, want)
	}
	h.MustRun("ip", "link", "del", "vnet7")
	h.MustRun("ip", "link", "del", "kvifb"+idx)
	l.hookMust(h, "release", xml)
	h.AssertClean(rules, fwd)
}
