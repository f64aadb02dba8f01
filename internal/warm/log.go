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
	logRun(r.v, start, what, "tap", r.tap, "network", r.hot.Network, "bridge", r.hot.Bridge, "mode", r.hot.Mode, "changes", changes)
}

// logRun logs a run that succeeded as runlog's Info does: what, then each
// key=value of kv whose value is not empty, quoted as runlog quotes it
// (strconv.Quote when it holds a space, a quote or an equals sign), then
// how long the run took. One buffer holds it all: each string built on the
// way was a new allocation, and the first of each size a page fault.
func logRun(v Verb, start time.Time, what string, kv ...string) {
	b := make([]byte, 0, 512)
	b = append(b, what...)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		b = append(append(append(b, ' '), kv[i]...), '=')
		if strings.ContainsAny(kv[i+1], " \"=") {
			b = strconv.AppendQuote(b, kv[i+1])
		} else {
			b = append(b, kv[i+1]...)
		}
	}
	b = append(b, " took="...)
	b = append(b, time.Since(start).Round(10*time.Microsecond).String()...)
	logBytes(v, logInfo, b)
}

// logLine writes "kvmnet-VERB: line" to stderr and to the system log with
// the tag kvmnet, as package runlog does, at priority prio.
func logLine(v Verb, prio int, line string) { logBytes(v, prio, []byte(line)) }

// logBytes is logLine. It builds the system log's message, whose end is
// stderr's line: "<PRI>Mmm dd hh:mm:ss kvmnet[PID]: kvmnet-VERB: line\n",
// as log/syslog's local format does. The time is UTC, not local time, to
// spare loading the zone: journald and rsyslog's imuxsock stamp a line
// with the time they receive it and ignore this one.
func logBytes(v Verb, prio int, line []byte) {
	// On the stack: a heap buffer of a size the run allocates nothing else
	// of would cost it a new span, and its first write two page faults.
	var stack [640]byte
	msg := stack[:0]
	msg = strconv.AppendInt(append(msg, '<'), int64(logDaemon|prio), 10)
	msg = appendStamp(append(msg, '>'), time.Now().UTC())
	msg = strconv.AppendInt(append(msg, " kvmnet["...), int64(os.Getpid()), 10)
	msg = append(msg, "]: "...)
	text := len(msg)
	msg = append(append(append(append(msg, "kvmnet-"...), v.Name...), ": "...), line...)
	msg = append(msg, '\n')
	_, _ = os.Stderr.Write(msg[text:])
	syslog(msg)
}

// appendStamp appends t as time.Stamp formats it ("Jan _2 15:04:05"), by
// hand: time's formatter is more code to fault in than the line is work.
func appendStamp(b []byte, t time.Time) []byte {
	_, month, day := t.Date()
	hour, min, sec := t.Clock()
	b = append(append(b, month.String()[:3]...), ' ')
	if day < 10 {
		b = append(b, ' ')
	}
	b = strconv.AppendInt(b, int64(day), 10)
	for i, n := range [3]int{hour, min, sec} {
		b = append(b, " ::"[i], byte('0'+n/10), byte('0'+n%10))
	}
	return b
}

// devLog is the system log's socket. A variable of the package, not a value
// of syslog's: as a Sockaddr it would escape to the heap, a new span.
var devLog = &unix.SockaddrUnix{Name: "/dev/log"}

// syslog sends msg to /dev/log: a datagram, sent without a connect (one
// system call less), or, should a stream socket be there, over a connection.
func syslog(msg []byte) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	err = unix.Sendto(fd, msg, unix.MSG_NOSIGNAL, devLog)
	if errors.Is(err, unix.EPROTOTYPE) { // a stream socket there
		unix.Close(fd)
		if fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return
		}
		if unix.Connect(fd, devLog) == nil {
			_, _ = unix.Write(fd, msg)
		}
	}
	unix.Close(fd)
}
