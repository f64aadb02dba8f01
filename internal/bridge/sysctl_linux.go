package bridge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// A link's own settings under /proc/sys/net/{ipv4,ipv6}/conf/LINK. /proc/sys/net
// shows the namespace of the thread that opens it, so these act in the caller's.

// ConfPath is the file of link's setting key of family.
func ConfPath(family, link, key string) string {
	return "/proc/sys/net/" + family + "/conf/" + link + "/" + key
}

// ReadConf returns link's setting key of family ("ipv4" or "ipv6"); ok is
// false when the kernel has no such setting (IPv6 turned off at boot).
//
//	sysctl net.FAMILY.conf.LINK.KEY
func ReadConf(family, link, key string) (val string, ok bool, err error) {
	b, err := os.ReadFile(ConfPath(family, link, key))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read net.%s.conf.%s.%s: %w", family, link, key, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

// WriteConf sets link's setting key of family to val.
//
//	sysctl -w net.FAMILY.conf.LINK.KEY=VAL
func WriteConf(family, link, key, val string) error {
	if err := os.WriteFile(ConfPath(family, link, key), []byte(val+"\n"), 0o644); err != nil {
		return fmt.Errorf("set net.%s.conf.%s.%s=%s: %w", family, link, key, val, err)
	}
	return nil
}
