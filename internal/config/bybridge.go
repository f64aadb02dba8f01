package config

import (
	"bytes"
	"os"
	"strconv"
)

// NetworkOnBridge returns the name of the network whose bridge is br: one the
// file defines, or the built-in default on br0 when the file does not define
// it. ok is false when br is no network's: a bridge kvmnet must leave alone.
func (f *File) NetworkOnBridge(br string) (name string, ok bool) {
	for _, name := range f.names() {
		n := f.Networks[name]
		n.Name = name
		if n.bridge() == br {
			return name, true
		}
	}
	if name, ok := f.brokenBridges[br]; ok {
		return name, true // its Network is its error
	}
	if _, defined := f.Networks[DefaultNetwork]; !defined && f.Broken[DefaultNetwork] == nil && br == DefaultBridge {
		return DefaultNetwork, true
	}
	return "", false
}

// Mentions reports whether the file at path, which does not decode, could
// define a network on bridge br: br is the default network's br0, or its
// name is in the text as a quoted string or a network's name. The libvirt
// hook asks it of a broken file, so that a domain on no bridge of kvmnet's
// starts whatever the file holds.
func Mentions(path, br string) bool {
	if br == DefaultBridge {
		return true
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return br != "" && (bytes.Contains(b, []byte(strconv.Quote(br))) || bytes.Contains(b, []byte("network."+br)))
}
