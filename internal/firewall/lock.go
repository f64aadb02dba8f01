package firewall

import "github.com/kvmnet/kvmnet/internal/nslock"

// tableLock names the lock that serialises kvmnet's writers of its table
// across networks. Callers lock a network, so two ups of one network never
// meet here; two networks' ups do, and Ensure rebuilds the base chains from
// what it read, so without this one could drop the other's jumps, and two
// last downs could each leave the table to the other.
//
// It is a namespace lock (package nslock): one per namespace, as the table is.
const tableLock = "@kvmnet-nftables-table"

// lockTable waits for the table lock, up to 30 s, and returns its release.
func lockTable() (func(), error) { return nslock.Lock(tableLock) }
