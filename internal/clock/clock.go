// Package clock abstracts time so that live-clock rules (segment publication, TTLs,
// expiry, reload timing) can be tested with a fake clock instead of sleeping.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock is the time source. Real is the wall clock; *Fake is moved by tests.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the subset of *time.Timer that code here uses.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was active.
	Stop() bool
	// Reset re-arms the timer to fire after d; it reports whether it was active.
	Reset(d time.Duration) bool
}

// Real is the wall clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer {
	return realTimer{time.NewTimer(d)}
}

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

// Or returns c, or Real when c is nil, so configs can leave the clock unset.
func Or(c Clock) Clock {
	if c == nil {
		return Real
	}
	return c
}

// Fake is a clock that only moves when told to. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex // protects now, timers, waiters
	now     time.Time
	timers  []*fakeTimer
	waiters []chan struct{} // woken whenever a timer is armed
}

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer arms a timer that fires when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	t.arm(f.now.Add(d))
	f.mu.Unlock()
	return t
}

// Advance moves time forward by d, firing every timer that falls due, in order.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves time to t (never backwards) and fires every timer due by then.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.Before(f.now) {
		return
	}
	f.now = t
	sort.SliceStable(f.timers, func(i, j int) bool { return f.timers[i].when.Before(f.timers[j].when) })
	keep := f.timers[:0]
	for _, tm := range f.timers {
		if !tm.when.After(t) {
			tm.active = false
			select {
			case tm.c <- tm.when:
			default: // like time.Timer, an unread tick is not queued twice
			}
			continue
		}
		keep = append(keep, tm)
	}
	f.timers = keep
}

// Timers reports how many timers are armed; tests poll it to know that the code under
// test is waiting before they advance the clock.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitTimers blocks until at least n timers are armed or the deadline passes, and
// reports whether they were. It replaces sleeping in tests.
func (f *Fake) WaitTimers(n int, deadline time.Duration) bool {
	end := time.Now().Add(deadline)
	for {
		f.mu.Lock()
		if len(f.timers) >= n {
			f.mu.Unlock()
			return true
		}
		ch := make(chan struct{})
		f.waiters = append(f.waiters, ch)
		f.mu.Unlock()
		left := time.Until(end)
		if left <= 0 {
			return false
		}
		select {
		case <-ch:
		case <-time.After(left):
			return false
		}
	}
}

type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	when   time.Time // guarded by f.mu
	active bool      // guarded by f.mu
}

// arm must be called with f.mu held.
func (t *fakeTimer) arm(when time.Time) {
	t.when = when
	if !when.After(t.f.now) {
		t.active = false
		select {
		case t.c <- when:
		default:
		}
		return
	}
	t.active = true
	t.f.timers = append(t.f.timers, t)
	for _, w := range t.f.waiters {
		close(w)
	}
	t.f.waiters = nil
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.removeLocked()
}

func (t *fakeTimer) removeLocked() bool {
	was := t.active
	t.active = false
	for i, tm := range t.f.timers {
		if tm == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			break
		}
	}
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.removeLocked()
	t.arm(t.f.now.Add(d))
	return was
}
