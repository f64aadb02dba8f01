package netsvc

import (
	"sync"
	"time"
)

// throttle lets a warning that every packet could repeat (an upstream down,
// a reply that cannot be sent) into the log at most once per period, so that
// a chatty guest cannot grow the log without bound.
type throttle struct {
	period time.Duration

	mu   sync.Mutex
	last time.Time
	held int // warnings held back since last
}

// allow reports whether to log now and how many warnings were held back
// since the last one logged.
func (t *throttle) allow(now time.Time) (ok bool, held int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < t.period {
		t.held++
		return false, 0
	}
	held, t.held, t.last = t.held, 0, now
	return true, held
}
