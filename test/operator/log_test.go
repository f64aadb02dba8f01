package operator

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// syslogd is a /dev/log for one test: the lines kvmnet sends to syslog.
type syslogd struct {
	t    *testing.T
	sock string
	conn *net.UnixConn
}

func newSyslogd(t *testing.T) *syslogd {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &syslogd{t: t, sock: sock, conn: conn}
}

// argv wraps argv so that it runs with this syslogd as its /dev/log: in a
// mount namespace of its own, over a /dev of its own.
func (s *syslogd) argv(argv ...string) []string {
	script := `: >"$0.null" && mount --bind /dev/null "$0.null" && mount -t tmpfs tmpfs /dev &&
		: >/dev/null && mount --bind "$0.null" /dev/null && : >/dev/log && mount --bind "$0" /dev/log && exec "$@"`
	return append([]string{"unshare", "--mount", "sh", "-c", script, s.sock}, argv...)
}

// lines returns what was logged since the last call, without syslog's
// header: "kvmnet-natup: up tap=…". A process that has exited has sent all
// it will, so a short quiet spell ends the read.
func (s *syslogd) lines() []string {
	var out []string
	buf := make([]byte, 4096)
	for {
		s.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := s.conn.Read(buf)
		if err != nil {
			return out
		}
		msg := string(buf[:n])
		if _, rest, ok := strings.Cut(msg, "]: "); ok && strings.Contains(msg, " kvmnet[") {
			out = append(out, strings.TrimSpace(rest))
		} else {
			s.t.Errorf("syslog line without the tag kvmnet: %q", msg)
		}
	}
}

// TestLogging: what the README's Logging says. A helper logs one line per
// run, to stderr and syslog, errors and bad arguments included, and one more
// per warning; the operator tool logs what it changes and its errors, but a
// command line it cannot parse goes to stderr only, and status, mac,
// version and --help log nothing.
func TestLogging(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed (util-linux)")
	}
	h := newHost(t, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	s := newSyslogd(t)
	h.taps("vnet0")
	netAdminOnly := []string{"setpriv", "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", "--"}
	cases := []struct {
		before []string // a command that runs first, unlogged
		argv   []string
		syslog []string // the lines' starts, in order
		stderr int      // lines on stderr
	}{
		{nil, []string{"kvmnet-natup"}, []string{"kvmnet-natup: want exactly one argument"}, 1},
		{nil, []string{"kvmnet-natup", "--version"}, nil, 0},
		{nil, []string{"kvmnet-natup", "vnet0"}, []string{"kvmnet-natup: up tap=vnet0"}, 1},
		{nil, []string{"kvmnet-natdown", "vnet0"}, []string{"kvmnet-natdown: down tap=vnet0"}, 1},
		{nil, append(netAdminOnly, "kvmnet-natup", "vnet0"), []string{"kvmnet-natup: up tap=vnet0", "kvmnet-natup: warning: "}, 2},
		{nil, []string{"kvmnet", "status"}, nil, 0},
		{nil, []string{"kvmnet", "mac", "web1"}, nil, 0},
		{nil, []string{"kvmnet", "version"}, nil, 0},
		{nil, []string{"kvmnet", "down", "--help"}, nil, 0},
		{nil, []string{"kvmnet", "bogus"}, nil, 1},
		{nil, []string{"kvmnet", "up"}, nil, 1},
		{nil, []string{"kvmnet", "down"}, nil, 1},
		{nil, []string{"kvmnet", "down", "lab", "--all"}, nil, 1},
		{nil, []string{"kvmnet", "status", "--bogus"}, nil, 1},
		{nil, []string{"kvmnet", "up", "nosuch"}, []string{"kvmnet up: network nosuch: not defined"}, 1},
		{[]string{"sysctl", "-qw", "net.ipv4.ip_forward=0"}, []string{"kvmnet", "doctor", "--fix"}, []string{"kvmnet doctor: fix changes="}, 1},
		{nil, []string{"kvmnet", "down", "--all", "--force"}, []string{"kvmnet down: down network=default changes="}, 1},
	}
	for _, c := range cases {
		if c.before != nil {
			h.MustRun(c.before...)
		}
		argv := append([]string{}, c.argv...)
		for i, a := range argv {
			if strings.HasPrefix(a, "kvmnet") {
				argv[i] = filepath.Join(bin, a)
			}
		}
		_, stderr, _ := h.Run(s.argv(append([]string{"env", "KVMNET_CONFIG=" + h.Config}, argv...)...)...)
		got := s.lines()
		name := strings.Join(c.argv, " ")
		if n := strings.Count(stderr, "\n"); n != c.stderr {
			t.Errorf("%s: %d lines on stderr, want %d: %q", name, n, c.stderr, stderr)
		}
		if len(got) != len(c.syslog) {
			t.Errorf("%s: syslog got %q, want lines starting %q", name, got, c.syslog)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], c.syslog[i]) || !strings.Contains(stderr, got[i]) {
				t.Errorf("%s: syslog line %q, want it to start %q and be on stderr too (%q)", name, got[i], c.syslog[i], stderr)
			}
		}
	}
	h.helper("kvmnet-natdown", "vnet0")
	h.MustRun("ip", "link", "del", "vnet0")
	h.AssertClean(rules, fwd)
}
