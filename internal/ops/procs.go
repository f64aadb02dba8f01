package ops

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// procHere finds a live process of this process's network namespace for
// which match, given its /proc/PID directory (or a thread's, see live),
// holds; "" when there is none. A process in another namespace serves other
// links, and a zombie (nothing reaps an orphan in a container whose PID 1
// does not) serves nothing.
//
//	pgrep --nslist net --ns $$ ...
func procHere(match func(dir string) bool) (string, error) {
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return "", fmt.Errorf("read own network namespace: %w", err)
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return "", fmt.Errorf("list processes: %w", err)
	}
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		dir := live(filepath.Join("/proc", d.Name()))
		if dir == "" || !match(dir) {
			continue
		}
		if ns, err := os.Readlink(filepath.Join(dir, "ns", "net")); err == nil && ns == own {
			return d.Name(), nil
		}
	}
	return "", nil
}

// named matches a process whose command name (/proc/PID/comm) is comm.
func named(comm string) func(dir string) bool {
	return func(dir string) bool {
		b, err := os.ReadFile(filepath.Join(dir, "comm"))
		return err == nil && strings.TrimSpace(string(b)) == comm
	}
}

// live is the directory to read process dir's command line and namespace
// from while it runs: dir itself, or, when its leader thread has exited
// before the others (a zombie leader, ctl.Exiting), /proc/PID/task/TID of a
// thread still running, for the leader's read empty. Such a process still
// holds its descriptors (a teardown's lock among them): it is at work, not
// gone. "" when the process is gone.
//
//	cat /proc/PID/task/*/cmdline
func live(dir string) string {
	if !zombie(dir) {
		return dir
	}
	pid, err := strconv.Atoi(filepath.Base(dir))
	if err != nil || !ctl.Exiting(pid) {
		return ""
	}
	tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
	for _, t := range tasks {
		if task := filepath.Join(dir, "task", t.Name()); !zombie(task) {
			return task
		}
	}
	return ""
}

// zombie reports whether the process of /proc/PID directory dir has exited
// and awaits its parent.
func zombie(dir string) bool {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	i := bytes.LastIndexByte(stat, ')')
	return err != nil || i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z'
}
