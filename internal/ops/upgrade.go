package ops

import (
	"fmt"
	"slices"

	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/version"
)

// olderRules: rules another kvmnet version made (the network came up before
// an upgrade, or a downgrade) may differ from this version's without
// anything being wrong: the network's next up, or doctor --fix, rewrites
// them. It is so when the record says another version made them (or none:
// a release before the stamp) and the network still has rules of its own
// in place; with none left, they are missing, whoever made them.
func (c *netCheck) olderRules(missing []string) (Finding, bool) {
	if c.rec.RulesVersion == version.Version {
		return Finding{}, false
	}
	owners, err := firewall.Owners(c.fw.Backend())
	if err != nil || !slices.Contains(owners, c.name) {
		return Finding{}, false
	}
	made := "kvmnet " + c.rec.RulesVersion
	if c.rec.RulesVersion == "" {
		made = "an older kvmnet (its record names no version)"
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
