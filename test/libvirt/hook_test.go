package libvirt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testhost"
)

// The hook run as libvirt runs it (argv, XML on stdin, a bare environment but
// KVMNET_CONFIG), with no libvirtd: the moments a booted domain passes too
// quickly to test there.

const hookUUID = "71e034e8-8034-44b1-9a13-590d20154371"

// hookXML is a domain g1 with an <interface type='bridge'> on br, with
// libvirt's <target dev> when tap is not "".
func hookXML(br, tap string) string {
	target := ""
	if tap != "" {
		target = "<target dev='" + tap + "'/>"
	}
	return `<domain type='qemu' id='3'><name>g1</name><uuid>` + hookUUID + `</uuid><devices>` +
		`<interface type='bridge'><source bridge='` + br + `'/>` + target + `<model type='virtio'/></interface>` +
		`</devices></domain>`
}

// runHook runs the hook for op with xml on stdin.
func runHook(h *testhost.Host, op, xml string) (string, error) {
	c := h.Cmd("env", "-i", "LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "KVMNET_CONFIG="+h.Config,
		filepath.Join(h.Bin, "kvmnet-libvirt-hook"), "g1", op, "begin", "-")
	c.Stdin = strings.NewReader(xml)
	out, err := c.CombinedOutput()
	return string(out), err
}

func (l *lab) hookMust(h *testhost.Host, op, xml string) string {
	l.t.Helper()
	out, err := runHook(h, op, xml)
	if err != nil {
		l.t.Fatalf("hook %s: %v\n%s", op, err, out)
	}
	return out
}

func operator(h *testhost.Host, args ...string) (string, error) {
	o, e, err := h.Run(append([]string{"env", "KVMNET_CONFIG=" + h.Config, filepath.Join(h.Bin, "kvmnet")}, args...)...)
	return o + e, err
}

// A domain between `prepare` and `start` has no tap yet: it still holds the
// network against gc and `kvmnet down`; its taps, once recorded, are named in
// status; `release` after its taps are gone takes the network down.
func TestHookLifecycle(t *testing.T) {
	h := testhost.New(t, bin, "")
	l := &lab{t: t}
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	if out := l.hookMust(h, "prepare", hookXML("br0", "")); !strings.Contains(out, "prepare domain=g1 network=default") {
		t.Errorf("prepare logged %q", out)
	}
	if out, err := operator(h, "gc"); err != nil || !h.Exists("br0") {
		t.Fatalf("gc took the network from a starting domain (br0 there: %v): %v\n%s", h.Exists("br0"), err, out)
	}
	out, err := operator(h, "down", "default")
	if err == nil || !strings.Contains(out, "libvirt domain g1 (starting)") {
		t.Errorf("kvmnet down with a starting domain: %v\n%s", err, out)
	}
	h.MustRun("ip", "tuntap", "add", "vnet7", "mode", "tap")
	h.MustRun("ip", "link", "set", "vnet7", "master", "br0", "up")
	if out := l.hookMust(h, "start", hookXML("br0", "vnet7")); !strings.Contains(out, `start domain=g1 network=default changes="record vnet7"`) {
		t.Errorf("start logged %q", out)
	}
	if out, _ := operator(h, "status"); !strings.Contains(out, "vnet7  default  tuntap  kvmnet  attached") || !strings.Contains(out, "g1") {
		t.Errorf("status does not name g1 beside vnet7:\n%s", out)
	}
	if out, err := operator(h, "down", "default"); err == nil || !strings.Contains(out, "in use by vnet7") {
		t.Errorf("kvmnet down under a running domain: %v\n%s", err, out)
	}
	// A VM of the helpers' joins and leaves: the domain keeps the network up.
	h.MustRun("ip", "tuntap", "add", "kvtap8", "mode", "tap")
	for _, prog := range []string{"kvmnet-natup", "kvmnet-natdown"} {
		if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(h.Bin, prog), "kvtap8"); err != nil {
			t.Fatalf("%s: %v\n%s", prog, err, e)
		}
	}
	h.MustRun("ip", "link", "del", "kvtap8")
	if h.Master("vnet7") != "br0" {
		t.Fatal("the last helper VM's down took the network from the domain")
	}
	h.MustRun("ip", "link", "del", "vnet7")
	l.hookMust(h, "stopped", hookXML("br0", "vnet7"))
	if !h.Exists("br0") {
		t.Fatal("stopped took the network down: release does")
	}
	out = l.hookMust(h, "release", hookXML("br0", "vnet7"))
	if !strings.Contains(out, "delete bridge br0") {
		t.Errorf("release logged %q", out)
	}
	h.AssertClean(rules, fwd)
}

// Domains on bridges that are no kvmnet network's are not kvmnet's: the hook
// exits 0, says nothing and changes nothing, whatever the operation.
func TestHookOtherBridge(t *testing.T) {
	h := testhost.New(t, bin, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	for _, op := range []string{"prepare", "start", "started", "stopped", "release", "migrate", "reconnect"} {
		if out, err := runHook(h, op, hookXML("virbr0", "vnet0")); err != nil || out != "" {
			t.Errorf("hook %s on virbr0: %v, output %q", op, err, out)
		}
	}
	h.AssertClean(rules, fwd)
}

// A symbolic link planted where the hook keeps its records is refused, and
// the prepare that needed it is undone.
func TestHookRefusesSymlink(t *testing.T) {
	h := testhost.New(t, bin, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	target := t.TempDir()
	var dir string
	if err := h.Do(func() error {
		d, err := state.Open()
		dir = d.Path
		return err
	}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "default.domains")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	out, err := runHook(h, "prepare", hookXML("br0", ""))
	t.Logf("prepare: %s", out)
	if err == nil || !strings.Contains(out, "record domain g1: "+link+": is a symbolic link: refused") {
		t.Errorf("prepare through a symlink: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("the hook wrote through the link: %v", ents)
	}
	os.Remove(link)
	h.AssertClean(rules, fwd)
}
