package libvirt

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testhost"
)

// Some setups run the <script> helpers with CAP_NET_ADMIN alone (libvirt
// 9.0 itself gives them all of libvirtd's capabilities): the DHCP/DNS
// daemon's ports 53 and 67 then need CAP_NET_BIND_SERVICE it lacks. The VM
// still gets its network; the user learns why it gets no lease from the
// system log (libvirt keeps a script's stderr for its debug log) and from
// `kvmnet doctor`.
func TestNetAdminOnlyTellsUser(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (util-linux)")
	}
	h := testhost.New(t, bin, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	h.MustRun("ip", "tuntap", "add", "vnet3", "mode", "tap")
	dir := t.TempDir()
	logs := listenSyslog(t, filepath.Join(dir, "syslog.sock"))
	caps := "-all,+net_admin"
	setpriv := []string{"setpriv", "--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps, "--"}
	run := func(prog string) string {
		argv := []string{"unshare", "-m", "--propagation", "private",
			filepath.Join(repoRoot(t), "test", "libvirt", "testdata", "withsyslog.sh"),
			filepath.Join(dir, "syslog.sock"), t.TempDir()}
		argv = append(append(argv, setpriv...), "env", "KVMNET_CONFIG="+h.Config, filepath.Join(bin, prog), "vnet3")
		_, stderr, err := h.Run(argv...)
		if err != nil {
			t.Fatalf("%s with CAP_NET_ADMIN only: %v\n%s", prog, err, stderr)
		}
		return stderr
	}
	want := "kvmnet-natup: warning: DHCP/DNS not started: ports 53 and 67 need CAP_NET_BIND_SERVICE; run `kvmnet up default` as root to start them"
	if stderr := run("kvmnet-natup"); !strings.Contains(stderr, want) {
		t.Errorf("stderr of natup:\n%s\nwant a line %q", stderr, want)
	}
	// <28> is LOG_DAEMON|LOG_WARNING.
	got := logs()
	t.Logf("system log:\n%s", got)
	if !strings.Contains(got, "<28>") || !strings.Contains(got, want) {
		t.Errorf("system log got:\n%s\nwant a warning with %q", got, want)
	}
	out, _, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(bin, "kvmnet"), "doctor")
	if err == nil || !strings.Contains(out, "the DHCP/DNS daemon is not running") {
		t.Errorf("kvmnet doctor (%v) does not report the missing daemon:\n%s", err, out)
	}
	run("kvmnet-natdown")
	h.MustRun("ip", "link", "del", "vnet3")
	h.AssertClean(rules, fwd)
}

// listenSyslog receives datagrams on a unix socket at path; the function it
// returns gives what arrived so far, waiting a little for the first.
func listenSyslog(t *testing.T, path string) func() string {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return func() string {
		var got []string
		timeout := time.After(5 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					return strings.Join(got, "\n")
				}
				got = append(got, m)
				timeout = time.After(200 * time.Millisecond)
			case <-timeout:
				return strings.Join(got, "\n")
			}
		}
	}
}
