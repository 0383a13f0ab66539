package loadgen

import "time"

// scheduler is the time source of viewers and the swarm. Everything a viewer does runs in
// a callback started by AfterFunc, so the real scheduler spends a goroutine only while a
// viewer has work in flight (a request, a parse) and none while it waits. Tests drive the
// same code with a virtual scheduler whose time moves only when every callback is idle,
// which makes stall lengths, reload intervals and start-up times exact.
type scheduler interface {
	Now() time.Time
	// AfterFunc runs f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) timer
}

// timer is the part of *time.Timer (as returned by time.AfterFunc) that viewers use.
type timer interface {
	// Stop prevents the callback from running; it reports whether it was pending.
	Stop() bool
	// Reset re-arms the callback to run after d; it reports whether it was pending.
	Reset(d time.Duration) bool
}

// realScheduler is the wall clock.
type realScheduler struct{}

var _ scheduler = realScheduler{}
var _ timer = (*time.Timer)(nil)

func (realScheduler) Now() time.Time { return time.Now() }

func (realScheduler) AfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }
