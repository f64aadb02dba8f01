package testhost

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// Settle waits until no kvmnet run holds a lock of namespace ns: a VM's last
// down returns before its network is gone, and hands the deletion of the
// bridge to a child that holds the network's lock until it is done
// (lifecycle's TeardownProc). It is what a following up waits for, and the
// one way a test waits for "gone after the last down".
func Settle(t testing.TB, ns *testns.NS) {
	t.Helper()
	err := ns.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		ents, err := os.ReadDir(d.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".lock")
			if !ok {
				continue
			}
			lk, err := d.Lock(name)
			if err != nil {
				return err
			}
			lk.Unlock()
		}
		return err
	})
	if err != nil {
		t.Fatalf("wait for kvmnet's locks: %v", err)
	}
}

// Settle is Settle of the host's namespace.
func (h *Host) Settle() {
	h.T.Helper()
	Settle(h.T, h.NS)
}
