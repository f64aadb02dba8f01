package ops

import (
	"errors"
	"fmt"
	"slices"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/firewall"
)

// An orphan is a network's rules that no record accounts for: kvmnet was
// killed between its rules and its record (a crash), /run/kvmnet was lost,
// or an older release tore the network down without knowing all it had (a
// downgrade: one from before the nftables backend leaves inet kvmnet
// whole). Rules name their network in every release (chains KVMNET-*-NAME
// and NAME-suffixed chains of inet kvmnet, comments kvmnet:NAME), so they
// are found by what they say, whatever release made them.
//
// An inet kvmnet that holds no network at all is an orphan of its own (name
// ""): nothing of this release leaves one, and the table alone drops nothing.
type orphan struct {
	backend firewall.Backend
	name    string
}

// orphans lists the networks with rules in a backend that no record of this
// namespace puts there. A backend that cannot be read (no iptables) has none.
func (h Host) orphans() []orphan {
	recorded := h.recordedByBackend()
	var out []orphan
	for _, b := range []firewall.Backend{firewall.NFTables, firewall.IPTables} {
		owners, err := firewall.Owners(b)
		if err != nil {
			continue
		}
		for _, name := range owners {
			if !slices.Contains(recorded[b], name) {
				out = append(out, orphan{b, name})
			}
		}
	}
	if emptyTableOrphan(recorded) {
		out = append(out, orphan{backend: firewall.NFTables})
	}
	return out
}

// recordedByBackend lists the networks recorded in this namespace, by the
// backend their rules are in.
func (h Host) recordedByBackend() map[firewall.Backend][]string {
	recorded := map[firewall.Backend][]string{}
	if names, err := h.Dir.Networks(); err == nil {
		for _, name := range names {
			if rec, ok, err := h.Dir.Load(name); err == nil && ok {
				b := recordedBackend(rec)
				recorded[b] = append(recorded[b], name)
			}
		}
	}
	return recorded
}

// emptyTableOrphan: inet kvmnet is there holding no network while no record
// names nftables. With a network recorded on nftables, an empty table is its
// rules missing, which its own check reports and its next up puts back.
func emptyTableOrphan(recorded map[firewall.Backend][]string) bool {
	if len(recorded[firewall.NFTables]) > 0 {
		return false
	}
	empty, err := firewall.EmptyTable()
	return err == nil && empty
}

// where says where an orphan's rules are, as the tool that shows them names it.
func (o orphan) where() string {
	switch {
	case o.name == "":
		return "nft list table inet kvmnet: no chain or rule of a network"
	case o.backend == firewall.NFTables:
		return "nft list ruleset: table inet kvmnet (or kvmnet:" + o.name + " rules in other tables or in iptables-legacy -S)"
	}
	return "iptables-save: chains KVMNET-*-" + o.name
}

// orphanFindings are doctor's word on each orphan.
func (h Host) orphanFindings() []Finding {
	var fs []Finding
	for _, o := range h.orphans() {
		if o.name == "" {
			fs = append(fs, Finding{
				Problem:  "kvmnet's nftables table inet kvmnet is left empty (an older kvmnet's teardown, or one by hand)",
				Evidence: o.where() + "; no record in " + h.Dir.Path + " names nftables",
				Fix:      "kvmnet gc (or doctor --fix) removes it",
				key:      "orphan nftables table",
				repair:   h.removeEmptyTable,
			})
			continue
		}
		fs = append(fs, Finding{Network: o.name,
			Problem:  "kvmnet's " + string(o.backend) + " rules of a network that is not up are left over (a crash, or an older kvmnet that did not know them)",
			Evidence: o.where() + "; no record in " + h.Dir.Path,
			Fix:      "kvmnet gc (or doctor --fix) removes them",
			key:      "orphan " + string(o.backend) + " " + o.name,
			repair:   func() ([]string, error) { return h.removeOrphan(o) },
		})
	}
	return fs
}

// removeOrphan removes an orphan's rules under its network's lock, unless a
// record for it appeared meanwhile (an up began: its rules are its own).
func (h Host) removeOrphan(o orphan) ([]string, error) {
	lk, err := h.Dir.Lock(o.name)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	rec, ok, err := h.Dir.Load(o.name)
	if err != nil {
		return nil, err
	}
	if ok && recordedBackend(rec) == o.backend {
		return nil, nil
	}
	if err := firewall.RemoveAll(o.backend, o.name); err != nil {
		return nil, fmt.Errorf("remove left-over %s rules of %s: %w", o.backend, o.name, err)
	}
	return []string{fmt.Sprintf("remove left-over %s rules of %s", o.backend, o.name)}, nil
}

// removeEmptyTable removes an empty inet kvmnet, unless a network's rules
// went into it meanwhile.
func (h Host) removeEmptyTable() ([]string, error) {
	gone, err := firewall.RemoveEmptyTable()
	if err != nil {
		return nil, fmt.Errorf("remove empty inet kvmnet: %w", err)
	}
	if !gone {
		return nil, nil
	}
	return []string{"remove empty nftables table inet kvmnet"}, nil
}

// removeOrphans is gc's and down --all's share: every orphan's rules go.
func (h Host) removeOrphans() ([]Reclaimed, error) {
	var out []Reclaimed
	var errs []error
	for _, o := range h.orphans() {
		if o.name == "" {
			continue // after the others: their removal may leave the table empty, or delete it
		}
		ch, err := h.removeOrphan(o)
		if len(ch) > 0 {
			out = append(out, Reclaimed{Network: o.name, Changes: ch, Note: "its rules had no record (a crash, or an older kvmnet's teardown)"})
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Only the table is read again, not every backend's rules.
	if emptyTableOrphan(h.recordedByBackend()) {
		ch, err := h.removeEmptyTable()
		if len(ch) > 0 {
			out = append(out, Reclaimed{Network: "-", Changes: ch, Note: "no network's rules were in it"})
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// leftover: a network that is not up, yet whose configured bridge carries
// exactly its gateway address, is kvmnet's own network whose record was lost
// (or an older release's it did not tear down), not another network's
// overlapping subnet.
func (c *netCheck) leftover() (Finding, bool) {
	gw := c.conf.Gateway
	// A bridged network's bridge and address are the admin's, up or not.
	if c.up || !gw.IsValid() || c.conf.Bridge == "" || !c.conf.Mode.Routed() {
		return Finding{}, false
	}
	br, err := bridge.Find(c.conf.Bridge)
	if err != nil || br == nil {
		return Finding{}, false
	}
	if has, err := bridge.HasAddress(br, gw); err != nil || !has {
		return Finding{}, false
	}
	return Finding{Network: c.name,
		Problem:  fmt.Sprintf("kvmnet's own bridge %s with its gateway %s is left with no record (a crash, a lost /run/kvmnet, or an older kvmnet's teardown)", br.Name, gw),
		Evidence: fmt.Sprintf("ip -4 addr show dev %s has %s; no record in %s", br.Name, gw, c.h.Dir.Path),
		Fix:      fmt.Sprintf("when no VM uses it: ip link del %s (the next up makes it again)", br.Name)}, true
}
