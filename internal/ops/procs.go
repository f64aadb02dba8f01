package ops

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procHere finds a live process of this process's network namespace for
// which match, given its /proc/PID directory, holds; "" when there is none.
// A process in another namespace serves other links, and a zombie (nothing
// reaps an orphan in a container whose PID 1 does not) serves nothing.
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
		dir := filepath.Join("/proc", d.Name())
		if !match(dir) {
			continue
		}
		if ns, err := os.Readlink(filepath.Join(dir, "ns", "net")); err == nil && ns == own && !zombie(dir) {
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

// zombie reports whether the process of /proc/PID directory dir has exited
// and awaits its parent.
func zombie(dir string) bool {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	i := bytes.LastIndexByte(stat, ')')
	return err != nil || i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z'
}
