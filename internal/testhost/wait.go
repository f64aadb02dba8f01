package testhost

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond for up to 20 s, for processes (QEMU's monitor) that give
// no other signal; on time-out it fails t with what out has collected.
func WaitFor(t testing.TB, cond func() bool, out *Buffer) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting; output so far:\n%s", out)
}

// Buffer is a bytes.Buffer a process writes while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
