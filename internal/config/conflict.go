package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// A conflict between two networks (one bridge, overlapping subnets or
// prefixes, one VNI on one port) is a mistake in one key of one of them,
// reported as every other mistake in a key is, at that key's line, and
// naming the other network:
//
//	kvmnet.toml:9: network.lab.bridge: br0: want a bridge of its own, not network default's
//
// The network blamed is the one that writes the key when only one of them
// does (a network whose bridge or address is its default did not choose
// it), else the later in name order, so that the error does not depend on
// map order.

// conflict is network blamed's error for key (its value as text) clashing
// with network other's: FILE:LINE: network.BLAMED.KEY: VALUE: MSG.
func (f *File) conflict(b []byte, blamed, key, value, format string, a ...any) *netError {
	table, k := "network."+blamed, key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		table, k = table+"."+key[:i], key[i+1:]
	}
	return &netError{blamed, fmt.Errorf("%s: network.%s.%s: %s: %s", whereIn(f.Path, b, table, k), blamed, key, value, fmt.Sprintf(format, a...))}
}

// blame picks, of networks x and y in conflict over key, the one to report
// and returns it after the other.
func blame(b []byte, x, y, key string) (other, blamed string) {
	_, xl := keyLine(b, "network."+x, key)
	_, yl := keyLine(b, "network."+y, key)
	switch {
	case xl > 0 && yl == 0:
		return y, x
	case yl > 0 && xl == 0:
		return x, y
	}
	return min(x, y), max(x, y)
}

// keyLine finds the header of TOML table table and the line inside it that
// sets key (0 when the table or the key is not written so).
func keyLine(b []byte, table, key string) (header, line int) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, MaxFileSize+1)
	for n := 1; sc.Scan(); n++ {
		t, _, _ := strings.Cut(sc.Text(), "#")
		t = strings.TrimSpace(t)
		if strings.HasPrefix(t, "[") {
			if header > 0 {
				break
			}
			if strings.Trim(t, "[] ") == table {
				header = n
			}
			continue
		}
		if rest, ok := strings.CutPrefix(t, key); header > 0 && ok && strings.HasPrefix(strings.TrimSpace(rest), "=") {
			return header, n
		}
	}
	return header, 0
}

// whereIn is "path:line" of key inside the TOML table called table, else
// of the table's header, else just path.
func whereIn(path string, b []byte, table, key string) string {
	header, line := keyLine(b, table, key)
	switch {
	case line > 0:
		return fmt.Sprintf("%s:%d", path, line)
	case header > 0:
		return fmt.Sprintf("%s:%d", path, header)
	}
	return where(path, b, table)
}
