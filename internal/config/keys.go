package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// modes is a set of network modes, the ones a key applies to.
type modes uint8

const (
	inIsolated modes = 1 << iota
	inHostOnly
	inNAT
	inBridged

	inRouted  = inHostOnly | inNAT
	inMadeBr  = inIsolated | inRouted // networks whose bridge kvmnet makes and writes rules for
	inAnyMode = inMadeBr | inBridged
)

func (s modes) has(m Mode) bool {
	switch m {
	case Isolated:
		return s&inIsolated != 0
	case HostOnly:
		return s&inHostOnly != 0
	case NAT:
		return s&inNAT != 0
	case Bridged:
		return s&inBridged != 0
	}
	return true // undecided: the helper supplies the mode later
}

// names lists the modes of s as a message says them: "hostonly and nat".
func (s modes) names() string {
	var out []string
	for _, m := range []Mode{Isolated, HostOnly, NAT, Bridged} {
		if s.has(m) {
			out = append(out, string(m))
		}
	}
	if len(out) < 2 {
		return strings.Join(out, "")
	}
	return strings.Join(out[:len(out)-1], ", ") + " and " + out[len(out)-1]
}

// kind is the TOML types a key takes and how a message names them. A key
// whose Go type checks its own value (an UnmarshalTOML with its own
// message) has none: the decoder's message is already in the form.
type kind struct {
	types []string // as toml.MetaData.Type names them
	want  string
}

var (
	aBool   = &kind{[]string{"Bool"}, "true or false"}
	aString = &kind{[]string{"String"}, "a string"}
	strs    = &kind{[]string{"Array"}, "an array of strings"}
	aTable  = &kind{[]string{"Hash"}, "a table"}
	tables  = &kind{[]string{"ArrayHash", "Array"}, "an array of tables"}
	anAddr  = &kind{[]string{"String"}, `an address in quotes, like "10.0.0.1/24"`}
	anIP    = &kind{[]string{"String"}, `an address in quotes, like "10.0.0.10"`}
	aMode   = &kind{[]string{"String"}, "isolated, hostonly, nat or bridged, in quotes"}
	aTime   = &kind{[]string{"String"}, `a duration in quotes, like "1h"`}
	aMAC    = &kind{[]string{"String"}, `a MAC in quotes, like "52:54:00:12:34:56"`}
)

// keySpec is what the file may give for one key of a [network.NAME] table.
type keySpec struct {
	kind  *kind // nil: the value's own type checks it
	modes modes // the modes it applies to; a key given for another mode is an error
}

// networkKeys are a network's keys, and the keys of its sub-tables as
// "table.key", with their types and the modes they apply to. A new key is
// a row here as well as a field of Network: its type errors then read as
// every other key's, and giving it to a mode it does not apply to is
// refused with that mode named.
var networkKeys = map[string]keySpec{
	"bridge":      {aString, inAnyMode},
	"mode":        {aMode, inAnyMode},
	"ports":       {aString, inAnyMode},
	"allow":       {strs, inAnyMode},
	"mtu":         {nil, inMadeBr},
	"allow_from":  {strs, inMadeBr},
	"vxlan":       {aTable, inMadeBr},
	"address":     {anAddr, inRouted},
	"address6":    {anAddr, inRouted},
	"dhcp":        {aBool, inRouted},
	"dns":         {aBool, inRouted},
	"dhcp_router": {aBool, inRouted},
	"dhcp_from":   {anIP, inRouted},
	"dhcp_to":     {anIP, inRouted},
	"lease_time":  {aTime, inRouted},
	"domain":      {aString, inRouted},
	"upstreams":   {strs, inRouted},
	"host":        {tables, inRouted},
	// Forwards into another mode are refused by Network, naming the mode.
	"forward": {tables, inAnyMode},

	"host.mac":  {aMAC, inAnyMode},
	"host.ip":   {anIP, inAnyMode},
	"host.ip6":  {anIP, inAnyMode},
	"host.name": {aString, inAnyMode},

	"forward.proto":   {aString, inAnyMode},
	"forward.port":    {nil, inAnyMode},
	"forward.to":      {aString, inAnyMode},
	"forward.host_ip": {anIP, inAnyMode},

	"vxlan.id":    {nil, inAnyMode},
	"vxlan.peers": {strs, inAnyMode},
	"vxlan.port":  {nil, inAnyMode},
	"vxlan.local": {anIP, inAnyMode},
	"vxlan.dev":   {aString, inAnyMode},
	"vxlan.evpn":  {aBool, inAnyMode},
}

// checkTypes checks the type of every key the file gives the network
// before it is decoded, so that `dhcp = "yes"` reads as every other mistake
// (FILE:LINE: network.NAME.dhcp: "yes": want true or false), not as the
// decoder's "incompatible types". It also records which keys the network
// sets, for checkModeKeys. values is the whole file decoded as plain maps,
// made on first use, to echo a wrong value and check arrays' elements.
func (n *Network) checkTypes(md toml.MetaData, values func() map[string]any) error {
	n.set = map[string]bool{}
	for _, k := range md.Keys() {
		if len(k) < 3 || k[0] != "network" || k[1] != n.Name {
			continue
		}
		rel := strings.Join(k[2:], ".")
		if len(k) == 3 {
			n.set[rel] = true
		}
		spec, ok := networkKeys[rel]
		if !ok || spec.kind == nil {
			continue // unknown keys are Parse's to report; typed values check themselves
		}
		if slices.Contains(spec.kind.types, md.Type(k...)) && spec.kind != strs {
			continue
		}
		v, bad := wrongValue(values(), k, spec.kind)
		if !bad {
			continue
		}
		text := valueText(v)
		var match func(string) bool // an array or table: the key's first line
		switch v.(type) {
		case string, int64, bool, float64:
			match = sameText(strings.Trim(text, `"`))
		}
		return keyErrorf(rel, match, "%s: want %s", text, spec.kind.want)
	}
	return nil
}

// wrongValue finds the value at k that kind does not take; in an array of
// tables (k passes through one), the first table's whose value is wrong.
func wrongValue(v any, k []string, kd *kind) (any, bool) {
	if len(k) == 0 {
		return v, !kd.takes(v)
	}
	switch x := v.(type) {
	case map[string]any:
		return wrongValue(x[k[0]], k[1:], kd)
	case []map[string]any:
		for _, t := range x {
			if w, bad := wrongValue(t, k, kd); bad {
				return w, true
			}
		}
	}
	return nil, false
}

// takes reports whether a decoded value is of the kind: an array of strings
// holds strings only.
func (kd *kind) takes(v any) bool {
	switch x := v.(type) {
	case string:
		return slices.Contains(kd.types, "String")
	case bool:
		return slices.Contains(kd.types, "Bool")
	case []map[string]any:
		return slices.Contains(kd.types, "ArrayHash")
	case map[string]any:
		return slices.Contains(kd.types, "Hash")
	case []any:
		if kd == strs {
			for _, e := range x {
				if _, ok := e.(string); !ok {
					return false
				}
			}
		}
		return slices.Contains(kd.types, "Array")
	}
	return false
}

// checkModeKeys refuses keys that do nothing in mode m, naming the mode:
// an isolated network has no address, an admin's bridge (bridged) gets
// none from kvmnet.
func (n *Network) checkModeKeys(m Mode, b []byte) *keyError {
	for _, k := range slices.Sorted(maps.Keys(n.set)) {
		spec, ok := networkKeys[k]
		if !ok || spec.modes.has(m) {
			continue
		}
		v, _ := wrongValue(decodeValues(b), []string{"network", n.Name, k}, &kind{})
		return keyErrorf(k, nil, "%s: want it only on %s networks, not on mode %s", valueText(v), spec.modes.names(), m)
	}
	return nil
}

// decodeValues is the file decoded as plain maps; nil when it does not decode.
func decodeValues(b []byte) map[string]any {
	var all map[string]any
	if _, err := toml.Decode(string(b), &all); err != nil {
		return nil
	}
	return all
}

// valueText is a value as a message echoes it: a string quoted and cut, a
// number or boolean as the file writes it, else what it is.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return Quote(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	}
	return tame(fmt.Sprint(v), maxEcho)
}
