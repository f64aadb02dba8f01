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

// encodeNetwork begins encoding n, without its forwards, for the next
// helper run's cache, in the background, and returns the wait for it (nil:
// nothing to cache). gob's first encoding of
// a type builds its codec by reflection, 0.2-0.3 ms here: an up that
// decoded the file starts it before its steps, which wait on the kernel
// meanwhile, and writes the cache only once they succeeded.
func encodeNetwork(n config.Net) func() []byte {
	if n.Source == "" || n.Elided {
		return func() []byte { return nil }
	}
	n.Forwards = nil
	ch := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		if gob.NewEncoder(&b).Encode(n) != nil {
			ch <- nil
			return
		}
		ch <- b.Bytes()
	}()
	return func() []byte { return <-ch }
}

// writeCache writes network's cache from encoded, if encodeNetwork gave one.
// A failure only costs the next run the decoding, so it is not an error.
func writeCache(d state.Dir, network string, encoded func() []byte) {
	if b := encoded(); b != nil {
		_ = safefile.WriteAtomic(d.File(network, cacheExt), b, 0o644)
	}
}
