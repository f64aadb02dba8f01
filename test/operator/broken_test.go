package operator

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBrokenSectionStaysLocal: a mistake in one network's section (here
// mtu = 12 in a network no VM uses) stops only that network: the others'
// VMs start; status shows it broken with the file's line and exits 1;
// doctor lists it; its own helper refuses with the same line.
func TestBrokenSectionStaysLocal(t *testing.T) {
	h := newHost(t, "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n"+
		"[network.bad]\nbridge = \"kvbad0\"\naddress = \"10.78.0.1/24\"\nmtu = 12\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	want := h.Config + ":" + lineOf(t, h.Config, "mtu = 12") + ": network.bad.mtu: mtu 12: want an integer from 576 to 65521"
	h.taps("vnet0", "vnet1", "vnet2")
	h.helper("kvmnet-ifup@lab", "vnet0")
	h.helper("kvmnet-natup", "vnet1") // the built-in default network
	if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, h.Program("kvmnet-natup@bad"), "vnet2"); exitCode(t, err) != 2 || !strings.Contains(e, want) {
		t.Errorf("kvmnet-natup@bad: exit %d, %q; want exit 2 and %s", exitCode(t, err), e, want)
	}
	if h.Exists("kvbad0") {
		t.Error("the broken network's bridge was made")
	}

	out, _, code := h.kvmnet(nil, "status")
	if code != 1 || !strings.Contains(out, "bad: broken: "+want) || !regexpLine(out, `^bad\s+-\s+broken\s+kvbad0 \(absent\)`) || !regexpLine(out, `^lab\s+hostonly\s+up\s`) {
		t.Errorf("status: exit %d, want 1, the broken network and the good one up:\n%s", code, out)
	}
	if out, _, code := h.kvmnet(nil, "status", "lab"); code != 0 {
		t.Errorf("status lab: exit %d, want 0:\n%s", code, out)
	}
	js, _, _ := h.kvmnet(nil, "status", "--json", "bad")
	if s := decodeStatus(t, js); len(s.Networks) != 1 || s.Networks[0].Broken != want {
		t.Errorf("status --json bad: %+v, want broken %q", s.Networks, want)
	}
	out, _, code = h.kvmnet(nil, "doctor")
	if code != 1 || !strings.Contains(out, "problem: network bad: its section of the configuration is wrong: no VM can start on it; evidence: "+want) {
		t.Errorf("doctor: exit %d, want 1 and the broken network:\n%s", code, out)
	}

	h.helper("kvmnet-ifdown@lab", "vnet0")
	h.helper("kvmnet-natdown", "vnet1")
	for _, tap := range []string{"vnet0", "vnet1", "vnet2"} {
		h.MustRun("ip", "link", "del", tap)
	}
	h.AssertClean(rules, fwd)
}

// regexpLine reports whether a line of out matches re.
func regexpLine(out, re string) bool {
	return regexp.MustCompile("(?m)" + re).MatchString(out)
}

// lineOf is the number of the line of file that is text.
func lineOf(t *testing.T, file, text string) string {
	t.Helper()
	for i, l := range strings.Split(mustRead(t, file), "\n") {
		if l == text {
			return strconv.Itoa(i + 1)
		}
	}
	t.Fatalf("%s has no line %q", file, text)
	return ""
}

// TestBrokenNetworkUpIsChecked: a network that is up when its section goes
// wrong is still up as its record says; doctor reports the section and
// checks the network's rules from the record too, and says its repair waits
// for the section.
func TestBrokenNetworkUpIsChecked(t *testing.T) {
	good := "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n"
	h := newHost(t, good)
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	h.taps("vnet0")
	h.helper("kvmnet-ifup@lab", "vnet0")
	if err := os.WriteFile(h.Config, []byte(good+"mtu = 12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun("iptables", "-F", "KVMNET-IN-lab")
	out, _, code := h.kvmnet(nil, "doctor")
	broken := "problem: network lab: its section of the configuration is wrong: no VM can start on it; evidence: " + h.Config + ":5: network.lab.mtu: mtu 12"
	missing := regexp.MustCompile(`problem: network lab: \d+ of kvmnet's rules are missing .*\(not now: ` + regexp.QuoteMeta(h.Config) + `:5: network.lab.mtu`)
	if code != 1 || !strings.Contains(out, broken) || !missing.MatchString(out) {
		t.Errorf("doctor: exit %d, want 1, the broken section and the missing rules:\n%s", code, out)
	}
	if err := os.WriteFile(h.Config, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	h.must("doctor", "--fix")
	h.helper("kvmnet-ifdown@lab", "vnet0")
	h.MustRun("ip", "link", "del", "vnet0")
	h.AssertClean(rules, fwd)
}
