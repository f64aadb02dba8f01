package lifecycle

import (
	"bytes"
	"encoding/gob"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/safefile"
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
const cacheExt = ".netcache.gob"

// The cache is gob, not JSON: config's types check what they decode, and
// some refuse their own zero value ("" for firewall and ports means the
// default), which the file never holds but a resolved network does.

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
	b, err := safefile.ReadFile(d.File(name, cacheExt), maxCache)
	if err != nil || gob.NewDecoder(bytes.NewReader(b)).Decode(&n) != nil || n.Source != source || n.Name != name {
		return config.Net{}, false
	}
	n.Elided = true
	return n, true
}

// maxCache bounds a cache file read into memory; a real one is under a kilobyte
// (and one with a thousand static hosts some 60 KB).
const maxCache = 1 << 20

// cacheNetwork keeps n, without its forwards, for the next helper run. A
// failure only costs that run the decoding, so it is not an error.
func cacheNetwork(d state.Dir, n config.Net) {
	if n.Source == "" || n.Elided {
		return
	}
	n.Forwards = nil
	var b bytes.Buffer
	if gob.NewEncoder(&b).Encode(n) == nil {
		_ = safefile.WriteAtomic(d.File(n.Name, cacheExt), b.Bytes(), 0o644)
	}
}
