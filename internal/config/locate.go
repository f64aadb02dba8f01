package config

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// keyError is a mistake in one key of a network found after decoding, which
// Parse reports as "file:line: network.NAME.KEY: msg", the form the decoder
// gives its own errors. The decoder keeps no positions, so the line is found
// in the text: the nth line after the network's header that sets the key
// (its last part: "name" for "host.name") to a value match accepts.
type keyError struct {
	key   string            // "lease_time", "host.name"
	match func(string) bool // nil: any value
	nth   int               // 0 or 1: the first such line; 2: the second (a duplicate)
	// forward is the 1-based index of the [[forward]] table the key is in, 0 for none.
	forward int
	msg     string
}

func (e *keyError) Error() string { return e.key + ": " + e.msg }

func keyErrorf(key string, match func(string) bool, format string, a ...any) *keyError {
	return &keyError{key: key, match: match, msg: fmt.Sprintf(format, a...)}
}

// sameText, sameMAC and sameIP match a value as written in the file.
func sameText(v string) func(string) bool {
	return func(s string) bool { return strings.EqualFold(s, v) }
}

func sameMAC(v string) func(string) bool {
	return func(s string) bool { m, err := net.ParseMAC(s); return err == nil && m.String() == v }
}

func sameIP(a netip.Addr) func(string) bool {
	return func(s string) bool { v, err := netip.ParseAddr(s); return err == nil && v == a }
}

// where is "path:line" of the key's line, else of the table's (where).
func (e *keyError) where(path string, b []byte, table string) string {
	if e.forward > 0 {
		network := strings.TrimPrefix(table, "network.")
		return forwardWhere(path, b, network, e.forward, strings.TrimPrefix(e.key, "forward."))
	}
	start := whereLine(b, table)
	last := e.key[strings.LastIndexByte(e.key, '.')+1:]
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, MaxFileSize+1)
	n := 0
	for line := 1; sc.Scan(); line++ {
		if line < start {
			continue
		}
		k, v, ok := strings.Cut(sc.Text(), "=")
		if k = strings.TrimSpace(k); !ok || k != last && !strings.HasSuffix(k, "."+last) {
			continue
		}
		v, _, _ = strings.Cut(strings.TrimSpace(v), "#")
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		if e.match == nil || e.match(v) {
			if n++; n >= e.nth {
				return fmt.Sprintf("%s:%d", path, line)
			}
		}
	}
	return where(path, b, table)
}

// where is "path:line" for the line that defines key (a bare key or a table
// name, "network.lab" also found as [[network.lab.host]]), or just path when
// no line does.
func where(path string, b []byte, key string) string {
	if line := whereLine(b, key); line > 0 {
		return fmt.Sprintf("%s:%d", path, line)
	}
	return path
}

// whereInner is where for the innermost part of key a line begins with:
// a key inside an inline table (bandwidth = { up = "1mbit" }) is found by
// the key the table is the value of.
func whereInner(path string, b []byte, key []string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if line := whereLine(b, key[i]); line > 0 {
			return fmt.Sprintf("%s:%d", path, line)
		}
	}
	return path
}

// whereLine is the number of the line where defines key, 0 for none.
func whereLine(b []byte, key string) int {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, MaxFileSize+1)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimLeft(strings.TrimSpace(sc.Text()), "[ ")
		if rest, ok := strings.CutPrefix(t, key); ok && (rest == "" || strings.ContainsAny(rest[:1], "]. =")) {
			return line
		}
	}
	return 0
}
