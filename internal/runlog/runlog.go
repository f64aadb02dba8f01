// Package runlog writes kvmnet's one line per run, and one per change, to
// stderr and to the system log under the tag "kvmnet": QEMU started with
// -daemonize throws a script's stderr away, so `journalctl -t kvmnet` is
// where the story of a VM's network is told.
package runlog

import (
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Tag is the syslog tag of every line kvmnet logs.
const Tag = "kvmnet"

// Logger writes structured lines: "PROG: MESSAGE key=value ...".
type Logger struct {
	prog   string
	stderr io.Writer
	sys    *syslog.Writer // nil when the host has no syslog socket
}

// Open returns a logger for the program called prog. No syslog socket (a
// container, a minimal CI machine) is not an error: stderr still gets the line.
func Open(prog string) *Logger {
	return &Logger{prog: prog, stderr: os.Stderr, sys: dialSyslog()}
}

// devLog is the system log's socket on Linux (journald's and rsyslog's alike).
const devLog = "/dev/log"

// dialSyslog connects to /dev/log once, as a datagram socket, and as a stream
// only when the socket there is one. syslog.New would try two more paths
// that are macOS's and the BSDs', each as datagram and stream: six failed
// connects per run on a host with no system log.
func dialSyslog() *syslog.Writer {
	const prio = syslog.LOG_INFO | syslog.LOG_DAEMON
	sys, err := syslog.Dial("unixgram", devLog, prio, Tag)
	if errors.Is(err, syscall.EPROTOTYPE) {
		sys, err = syslog.Dial("unix", devLog, prio, Tag)
	}
	if err != nil {
		return nil
	}
	return sys
}

// Close closes the syslog connection.
func (l *Logger) Close() {
	if l.sys != nil {
		l.sys.Close()
	}
}

// Info logs msg with key=value pairs (kv alternates keys and values).
func (l *Logger) Info(msg string, kv ...string) {
	line := format(msg, kv)
	fmt.Fprintf(l.stderr, "%s: %s\n", l.prog, line)
	if l.sys != nil {
		_ = l.sys.Info(l.prog + ": " + line)
	}
}

// Warn logs msg with key=value pairs as Info does, prefixed "warning: " and
// at the system log's warning priority: something the user must act on
// although the run succeeded (under libvirt, a script's stderr reaches only
// libvirt's debug log, so the system log is where they see it).
func (l *Logger) Warn(msg string, kv ...string) {
	line := "warning: " + format(msg, kv)
	fmt.Fprintf(l.stderr, "%s: %s\n", l.prog, line)
	if l.sys != nil {
		_ = l.sys.Warning(l.prog + ": " + line)
	}
}

// Error logs err as one line.
func (l *Logger) Error(err error) {
	line := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(l.stderr, "%s: %s\n", l.prog, line)
	if l.sys != nil {
		_ = l.sys.Err(l.prog + ": " + line)
	}
}

func format(msg string, kv []string) string {
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		b.WriteString(" " + kv[i] + "=")
		if strings.ContainsAny(kv[i+1], " \"=") {
			b.WriteString(strconv.Quote(kv[i+1]))
		} else {
			b.WriteString(kv[i+1])
		}
	}
	return b.String()
}
