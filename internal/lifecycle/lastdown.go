package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/selfbin"
	"github.com/kvmnet/kvmnet/internal/state"
)

// TeardownProc is argv[0] of the kvmnet binary when it finishes a last down
// in the background (FinishDown); argv[1] is the network.
const TeardownProc = "kvmnet-teardown"

// lastDown tears down network rec, whose bridge kvmnet made, as its last VM
// leaves, holding lock lk. QEMU waits for its downscript, and most of a
// teardown waits on the kernel or on other processes: deleting a link 25-70
// ms whatever the order, removing rules one RCU grace period (8-20 ms here:
// closing the nf_tables socket after a transaction that deleted anything
// waits for the kernel to free it), the daemon's or the rule watcher's exit
// after SIGTERM 3-30 ms. None of that matters to a guest any more: no VM is
// on the bridge (Down detached the last tap, and lastUser found no other
// port), so nothing reaches the network's rules, address or daemon from a
// guest; but for a VXLAN port, through which other hosts' guests do until
// the child deletes it (rulesLater). So the down does here what the host
// sees beyond the bridge: it signals the daemon and releases ip_forward
// (and turns off the route_localnet it turned on, in beginTeardown). It
// hands the rest (the daemon's exit, the rule watcher, the rules, the
// firewalld zone, the bridge and a VXLAN link) to a child, TeardownProc,
// which goes on holding lk: an flock belongs to the open file description,
// which the child's descriptor shares. So the lock stays held until the
// network is gone: a following up, heal or gc waits for it and never sees
// half a network. (The daemon and the watcher start no heal for the child's
// transactions, which are kvmnet's; another program's start one that waits
// for the lock, and then finds the network gone.) Before the child starts,
// the record says so (TearingDown, Doing) and no longer claims what is
// undone: a child killed midway leaves a journal that the next up, down or
// gc finishes. Without the kvmnet binary, or when the child cannot start,
// the down does it all itself.
func lastDown(d state.Dir, lk *state.Lock, rec state.Network) ([]string, error) {
	exe, err := selfbin.Kvmnet()
	if err != nil {
		return Teardown(d, rec)
	}
	if err := beginTeardown(d, rec); err != nil {
		return nil, err
	}
	now := rec
	now.Services = false // signalled here; the child waits for its exit
	parts, later := teardownParts(d, now)
	if rec.Services {
		parts = append(parts, part{"stop DHCP/DNS on " + rec.Bridge, func() (bool, error) { return termServices(d, rec.Name) }})
	}
	changes, err := undo(parts)
	if err != nil {
		more, lerr := undo(later)
		return append(changes, more...), errors.Join(err, lerr)
	}
	left := rec // what the child finishes: the daemon's exit, the rules, the links
	left.Forwarding, left.Forwarding6, left.RouteLocalnet = false, false, false
	left.Rules = rec.Rules && rulesLater(rec)
	names := make([]string, len(later))
	for i, p := range later {
		names[i] = p.name
	}
	left.Doing, left.TearingDown = strings.Join(names, ", "), true
	if err := d.Save(left); err != nil {
		return changes, err
	}
	if err := handOver(exe, rec.Name, lk); err != nil {
		more, err := Teardown(d, left)
		return append(changes, more...), err
	}
	for _, name := range names {
		changes = append(changes, name+" (in the background)")
	}
	return changes, nil
}

// termServices asks the network's daemon to exit, and does not wait for it:
// it stops answering once it handles the signal, while its exit (it writes
// its leases and closes its sockets: 3-30 ms) is FinishDown's to wait for. It reports whether a daemon ran.
//
//	kill -TERM $(cat /run/kvmnet/netns-COOKIE/NETWORK.netsvc.pid)
func termServices(d state.Dir, network string) (bool, error) {
	pid, ok := ServicesPID(d, network)
	if !ok {
		return false, nil
	}
	if err := unix.Kill(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return false, fmt.Errorf("stop netsvc pid %d: %w", pid, err)
	}
	return true, nil
}

// handOver starts the kvmnet binary exe as TeardownProc for network, in a
// session of its own (a signal to QEMU's process group must not stop it)
// with lk's file as its descriptor 3 and /dev/null for the others (libvirt
// reads a script's output until the last writer closes it), and does not
// wait for it. It runs in the calling thread's network namespace. Nothing
// reaps it once this process is gone but init.
func handOver(exe, network string, lk *state.Lock) error {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	null := devnull.Fd()
	if _, err := selfbin.Start(exe, []string{TeardownProc, network}, []uintptr{null, null, null, lk.File().Fd()}); err != nil {
		return fmt.Errorf("start %s %s: %w", TeardownProc, network, err)
	}
	return nil
}

// lockFD is the descriptor a TeardownProc child holds the network's lock on.
const lockFD = 3

// FinishDown is TeardownProc: it finishes the teardown of network name that
// a last down left to it, holding the lock that down handed over on
// descriptor 3 (or, run by hand, taking it). A record that is not left so
// (finished already, or a network up again) it leaves alone.
func FinishDown(d state.Dir, name string) (Result, error) {
	lk, err := d.Adopt(name, lockFD)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	rec, ok, err := d.Load(name)
	if err != nil || !ok || !rec.TearingDown {
		return Result{}, err
	}
	changes, err := Teardown(d, rec)
	return Result{Changes: changes}, err
}

// finishTeardown finishes, under the network's lock, a teardown that a last
// down left to a child that was killed (state.Network.TearingDown), so that
// an up starts from nothing rather than from half a network whose daemon
// may still be exiting. It reports whether the record is gone.
func finishTeardown(d state.Dir, rec state.Network) (bool, error) {
	if !rec.TearingDown {
		return false, nil
	}
	if _, err := Teardown(d, rec); err != nil {
		return false, fmt.Errorf("finish the last down of %s: %w", rec.Name, err)
	}
	return true, nil
}
