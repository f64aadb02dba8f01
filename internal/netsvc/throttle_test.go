package netsvc

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	th := throttle{period: time.Minute}
	t0 := time.Unix(1000, 0)
	for i, c := range []struct {
		at   time.Duration
		ok   bool
		held int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{30 * time.Second, false, 0},
		{time.Minute, true, 2},
		{time.Minute + time.Second, false, 0},
		{3 * time.Minute, true, 1},
	} {
		if ok, held := th.allow(t0.Add(c.at)); ok != c.ok || held != c.held {
			t.Errorf("call %d at +%s: allow = %v, %d; want %v, %d", i, c.at, ok, held, c.ok, c.held)
		}
	}
}
