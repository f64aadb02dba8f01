package lifecycle

import (
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
)

// A helper resolves its network from the configuration file on every run.
// Decoding TOML costs about 4.5 µs a line here, so a file with a hundred
// forwards would cost a warm up 2 ms more than one without. A successful up
// therefore keeps the network's resolution, forwards left out, beside its
// record (so the last down removes it), keyed by the file's identity
// (config.Stamp) and the helper's mode; the next helper decodes the file
// only when it changed. The forwards are in their own file with the hash of
// the configuration that installed them; an up whose cached hash is not the
// record's gets ErrConfigStale and decodes the file after all.

// cacheExt is the cache file's extension, beside the network's record.
const cacheExt = ".netcache.json"

// netCache is the cache file: the network, and beside it its firewall choice,
// which config.Net leaves out of JSON.
type netCache struct {
	Net      config.Net `json:"net"`
	Firewall string     `json:"firewall"`
}

// CachedNetwork returns network name as the last successful up resolved it
// from the file and mode source names (config.Net.Source), with its forwards
// elided; ok is false when there is no such cache.
func CachedNetwork(d state.Dir, name, source string) (n config.Net, ok bool) {
	if name == "" {
		name = config.DefaultNetwork
	}
	if state.CheckName(name) != nil {
		return n, false
	}
	var c netCache
	if ok, err := d.ReadJSON(name+cacheExt, &c); err != nil || !ok || c.Net.Source != source || c.Net.Name != name {
		return config.Net{}, false
	}
	n = c.Net
	n.Firewall, n.Elided = config.Firewall(c.Firewall), true
	return n, true
}

// cacheNetwork keeps n, without its forwards, for the next helper run. A
// failure only costs that run the decoding, so it is not an error.
func cacheNetwork(d state.Dir, n config.Net) {
	if n.Source == "" || n.Elided {
		return
	}
	c := netCache{Net: n, Firewall: string(n.Firewall)}
	c.Net.Forwards = nil
	_ = d.WriteJSON(n.Name+cacheExt, c)
}
