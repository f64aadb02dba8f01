package ops

import (
	"fmt"
	"slices"

	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/version"
)

// olderRules: rules another kvmnet version made (the network came up before
// an upgrade, or a downgrade) may differ from this version's without
// anything being wrong: the network's next up, or doctor --fix, rewrites
// them. It is so when the record says another version made them (or none:
// a release before the stamp) and the network still has rules of its own
// in place; with none left, they are missing, whoever made them.
func (c *netCheck) olderRules(missing []string) (Finding, bool) {
	made, ok := olderMaker(c.name, c.rec, c.fw.Backend())
	if !ok {
		return Finding{}, false
	}
	lacks := "iptables-save lacks: "
	if c.fw.Backend() == firewall.NFTables {
		lacks = "nft list ruleset lacks: "
	}
	f := c.heal(Finding{Info: true,
		Problem:  fmt.Sprintf("rules from %s, replaced at next up or doctor --fix", made),
		Evidence: fmt.Sprintf("this is kvmnet %s; %s%s%s", version.Version, lacks, missing[0], more(len(missing)-1)),
		Fix:      "none needed (kvmnet doctor --fix rewrites them now)"})
	return f, true
}

// olderMaker names the kvmnet that made recorded network name's rules when it
// is not this one and the network still has rules of its own in backend b:
// "kvmnet VERSION", or "an older kvmnet (…)" for a record from before the
// stamp. Status and doctor say the same of such rules.
func olderMaker(name string, rec state.Network, b firewall.Backend) (string, bool) {
	if rec.RulesVersion == version.Version {
		return "", false
	}
	owners, err := firewall.Owners(b)
	if err != nil || !slices.Contains(owners, name) {
		return "", false
	}
	if rec.RulesVersion == "" {
		return "an older kvmnet (its record names no version)", true
	}
	return "kvmnet " + rec.RulesVersion, true
}
