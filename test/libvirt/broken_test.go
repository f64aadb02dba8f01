package libvirt

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
)

// A mistake in one network's section fails only the domains on that
// network's bridge; a file wrong as a whole fails only domains on a bridge
// it could name. A domain on no kvmnet bridge starts whatever the file holds:
// the hook exits 0 and says nothing.
func TestHookBrokenFile(t *testing.T) {
	h := testhost.New(t, bin, "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n"+
		"[network.bad]\nbridge = \"kvbad0\"\nmtu = 12\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	l := &lab{t: t}

	if out, err := runHook(h, "prepare", hookXML("virbr0", "")); err != nil || out != "" {
		t.Errorf("prepare on virbr0 beside a broken network: %v, output %q", err, out)
	}
	out, err := runHook(h, "prepare", hookXML("kvbad0", ""))
	if want := h.Config + ":" + lineOf(t, h.Config, "mtu = 12") + ": network.bad.mtu: mtu 12: want an integer from 576 to 65521"; err == nil || !strings.Contains(out, want) {
		t.Errorf("prepare on the broken network's bridge: %v, output %q, want %s", err, out, want)
	}
	l.hookMust(h, "prepare", hookXML("kvlab0", ""))
	if !h.Exists("kvlab0") {
		t.Error("the good network beside a broken one did not come up")
	}
	l.hookMust(h, "release", hookXML("kvlab0", ""))

	if err := os.WriteFile(h.Config, []byte("[network.lab\nbridge = \"kvlab0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"prepare", "start", "reconnect", "release"} {
		if out, err := runHook(h, op, hookXML("virbr0", "vnet0")); err != nil || out != "" {
			t.Errorf("%s on virbr0 with a file that does not parse: %v, output %q", op, err, out)
		}
	}
	for _, br := range []string{"kvlab0", "br0"} {
		if out, err := runHook(h, "prepare", hookXML(br, "")); err == nil || !strings.Contains(out, h.Config+":2: expected") {
			t.Errorf("prepare on %s with a file that does not parse: %v, output %q, want the file's line", br, err, out)
		}
	}
	h.AssertClean(rules, fwd)
}

// lineOf is the number of the line of file that is text.
func lineOf(t *testing.T, file, text string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if l == text {
			return strconv.Itoa(i + 1)
		}
	}
	t.Fatalf("%s has no line %q", file, text)
	return ""
}
