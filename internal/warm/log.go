package warm

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Syslog priorities: LOG_DAEMON with LOG_INFO or LOG_ERR, as package runlog
// logs.
const (
	logDaemon = 3 << 3
	logInfo   = 6
	logErr    = 3
)

// log writes the engine's line for a run that succeeded (cli's runLogged):
// "kvmnet-natup: up tap=vnet0 network=default bridge=br0 mode=nat changes="attach vnet0 to br0" took=1.2ms".
func (r *run) log(start time.Time, changes string) {
	what := "down"
	if r.v.Up {
		what = "up"
	}
	kv := []string{"tap", r.tap, "network", r.hot.Network, "bridge", r.hot.Bridge, "mode", r.hot.Mode, "changes", changes}
	var b strings.Builder
	b.WriteString(what)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] != "" {
			b.WriteString(" " + kv[i] + "=" + quote(kv[i+1]))
		}
	}
	b.WriteString(" took=" + time.Since(start).Round(10*time.Microsecond).String())
	logLine(r.v, logInfo, b.String())
}

// quote quotes a value as runlog does (strconv.Quote when it holds a space,
// a quote or an equals sign).
func quote(s string) string {
	if strings.ContainsAny(s, " \"=") {
		return strconv.Quote(s)
	}
	return s
}

// logLine writes "kvmnet-VERB: line" to stderr and to the system log with
// the tag kvmnet, as package runlog does, at priority prio.
func logLine(v Verb, prio int, line string) {
	line = "kvmnet-" + v.Name + ": " + line
	os.Stderr.WriteString(line + "\n")
	syslog(prio, line)
}

// syslog sends line to /dev/log as log/syslog's local format does:
// "<PRI>Mmm dd hh:mm:ss kvmnet[PID]: line". The time is UTC, not local time,
// to spare loading the zone: journald and rsyslog's imuxsock stamp a line
// with the time they receive it and ignore this one.
func syslog(prio int, line string) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	addr := &unix.SockaddrUnix{Name: "/dev/log"}
	err = unix.Connect(fd, addr)
	if errors.Is(err, unix.EPROTOTYPE) { // a stream socket there
		unix.Close(fd)
		if fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return
		}
		err = unix.Connect(fd, addr)
	}
	if err == nil {
		msg := "<" + strconv.Itoa(logDaemon|prio) + ">" + time.Now().UTC().Format(time.Stamp) +
			" kvmnet[" + strconv.Itoa(os.Getpid()) + "]: " + line + "\n"
		_, _ = unix.Write(fd, []byte(msg))
	}
	unix.Close(fd)
}
