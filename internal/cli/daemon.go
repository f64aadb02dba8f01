package cli

import (
	"os"
	"path/filepath"
)

// Daemon runs the DHCP/DNS daemon's main, run (netsvc.Main, which only the
// kvmnet binary links), under its own name in ps -e and top: the kernel names
// a process after the file it executed (kvmnet), whatever its argv[0].
func Daemon(args []string, run func([]string) int) int {
	setComm(filepath.Base(args[0]))
	return run(args)
}

// setComm renames the process, i.e. its main thread, whichever thread the
// caller runs on: prctl(PR_SET_NAME) would rename only the calling thread.
// A failure only leaves the name kvmnet.
//
//	echo -n NAME > /proc/self/comm
func setComm(name string) {
	_ = os.WriteFile("/proc/self/comm", []byte(name), 0)
}
