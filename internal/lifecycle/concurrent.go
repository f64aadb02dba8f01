package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Every netlink call and exec must act in the caller's network namespace. A
// helper process lives in one namespace, and goroutines may run on any
// thread; but a caller whose thread alone entered a namespace (a test, or a
// tool built on this package) gets each goroutine's work run on a thread
// switched into it, which needs the CAP_SYS_ADMIN that caller already used.

// concurrently runs fns at once, each in the caller's network namespace, and
// returns their errors, in order.
func concurrently(fns []func() error) []error {
	errs := make([]error, len(fns))
	within, done, err := callerNetns()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer done()
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = within(f)
		}()
	}
	wg.Wait()
	return errs
}

// inBackground starts fn on another goroutine, in the caller's network
// namespace, and returns a function that waits for its result; that function
// may be called any number of times.
func inBackground[T any](fn func() (T, error)) func() (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	within, done, err := callerNetns()
	if err != nil {
		ch <- result{err: err}
	} else {
		go func() {
			defer done()
			var r result
			r.err = within(func() (err error) {
				r.v, err = fn()
				return err
			})
			ch <- r
		}()
	}
	return sync.OnceValues(func() (T, error) {
		r := <-ch
		return r.v, r.err
	})
}

// callerNetns returns a function that runs f, on any goroutine, in the
// network namespace of the calling thread, and one that releases what it
// holds once every f is done.
func callerNetns() (within func(f func() error) error, done func(), err error) {
	apart, err := callerApart()
	if err != nil {
		return nil, nil, err
	}
	if !apart {
		return func(f func() error) error { return f() }, func() {}, nil
	}
	origin, err := netns.Get()
	if err != nil {
		return nil, nil, fmt.Errorf("open network namespace: %w", err)
	}
	return func(f func() error) error {
		runtime.LockOSThread()
		here, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("open network namespace: %w", err)
		}
		defer here.Close()
		if err := netns.Set(origin); err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("enter network namespace: %w", err)
		}
		ferr := f()
		// Going back lets the thread serve other goroutines; Go never ends
		// the main thread, which must not stay behind in the namespace. If
		// going back fails, the thread stays locked and ends with the goroutine.
		if netns.Set(here) == nil {
			runtime.UnlockOSThread()
		}
		return ferr
	}, func() { origin.Close() }, nil
}

// callerApart reports whether the calling thread is in another network
// namespace than some other thread of the process. Comparing with /proc/self/ns/net
// is not enough: that is the main thread's, and the caller may be it.
func callerApart() (bool, error) {
	var self unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &self); err != nil {
		return false, fmt.Errorf("read network namespace: %w", err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return false, fmt.Errorf("read network namespace: %w", err)
	}
	for _, t := range tasks {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/task/"+t.Name()+"/ns/net", &st); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) { // the thread ended
				continue
			}
			return false, fmt.Errorf("read network namespace: %w", err)
		}
		if st.Dev != self.Dev || st.Ino != self.Ino {
			return true, nil
		}
	}
	return false, nil
}
