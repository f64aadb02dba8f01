package cli

import (
	"slices"
	"testing"
)

// TestParseOptions: a flag that takes a value takes it after "=" or as the
// next argument, anywhere on the line; without one, or given to a command
// that has no such flag, it is refused.
func TestParseOptions(t *testing.T) {
	var mac command
	for _, c := range commands() {
		if c.name == "mac" {
			mac = c
		}
	}
	for _, args := range [][]string{
		{"web1", "--host", "192.168.100.10", "--network", "lab"},
		{"--host=192.168.100.10", "web1", "--network=lab"},
	} {
		c, err := parse(mac, args)
		if err != nil || !slices.Equal(c.args, []string{"web1"}) || c.options["--host"] != "192.168.100.10" || c.options["--network"] != "lab" {
			t.Errorf("mac %q: %+v, %v", args, c, err)
		}
	}
	for want, args := range map[string][]string{
		"flag --host wants a value": {"web1", "--host"},
		"--network is for --host":   {"web1", "--network", "lab"},
		"unknown flag --json":       {"web1", "--json"},
		"unknown flag --prune=1":    {"web1", "--prune=1"},
	} {
		if _, err := parse(mac, args); err == nil || err.Error() != want {
			t.Errorf("mac %q: %v, want %s", args, err, want)
		}
	}
}
