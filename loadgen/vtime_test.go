package loadgen

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"
)

// vclock is a virtual scheduler for deterministic player tests. Virtual time moves only
// when the system is quiescent: every callback it started has returned, or is blocked on
// a test server handler that is itself waiting for virtual time (parked). So a server can
// "take 10 s" to answer while the test runs in milliseconds, and every duration the player
// measures (stall lengths, reload intervals, start-up time) comes out exact.
type vclock struct {
	mu      sync.Mutex // protects all below
	cond    *sync.Cond
	now     time.Time
	seq     int
	timers  []*vtimer // pending
	running int       // callbacks started and not returned
	parked  int       // server handlers sleeping on virtual time
	// sleepers are the parked handlers by their client's address, so that a client
	// giving up (its request timed out) unparks its handler at that very moment.
	sleepers map[string]*sleeper
}

type sleeper struct {
	t       *vtimer
	aborted chan struct{}
}

type vtimer struct {
	c       *vclock
	when    time.Time
	seq     int
	f       func()
	pending bool
}

var _ scheduler = (*vclock)(nil)

func newVClock(start time.Time) *vclock {
	c := &vclock{now: start}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *vclock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *vclock) AfterFunc(d time.Duration, f func()) timer {
	t := &vtimer{c: c, f: f}
	c.mu.Lock()
	c.arm(t, d)
	c.mu.Unlock()
	return t
}

// arm must hold c.mu.
func (c *vclock) arm(t *vtimer, d time.Duration) {
	if d < 0 {
		d = 0
	}
	c.seq++
	t.when, t.seq, t.pending = c.now.Add(d), c.seq, true
	c.timers = append(c.timers, t)
	c.cond.Broadcast()
}

// remove must hold c.mu.
func (c *vclock) remove(t *vtimer) bool {
	if !t.pending {
		return false
	}
	t.pending = false
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			break
		}
	}
	return true
}

func (t *vtimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.remove(t)
}

func (t *vtimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.c.remove(t)
	t.c.arm(t, d)
	return was
}

// quiescent waits (in real time, up to a generous deadline) until nothing but parked
// handlers is running. Must hold c.mu.
func (c *vclock) quiescent() error {
	deadline := time.Now().Add(20 * time.Second)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // wake the wait below now and then so the deadline is checked
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			}
		}
	}()
	for c.running > c.parked {
		if time.Now().After(deadline) {
			return fmt.Errorf("virtual clock stuck at %v: %d callbacks running, %d parked", c.now, c.running, c.parked)
		}
		c.cond.Wait()
	}
	return nil
}

// runUntil fires timers in time order until virtual time reaches end.
func (c *vclock) runUntil(t testing.TB, end time.Time) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if err := c.quiescent(); err != nil {
			t.Fatal(err)
		}
		sort.Slice(c.timers, func(i, j int) bool {
			a, b := c.timers[i], c.timers[j]
			if a.when.Equal(b.when) {
				return a.seq < b.seq
			}
			return a.when.Before(b.when)
		})
		if len(c.timers) == 0 || c.timers[0].when.After(end) {
			if end.After(c.now) {
				c.now = end
			}
			return
		}
		next := c.timers[0]
		c.remove(next)
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.running++
		go func() {
			next.f()
			c.mu.Lock()
			c.running--
			c.cond.Broadcast()
			c.mu.Unlock()
		}()
	}
}

// run advances virtual time by d.
func (c *vclock) run(t testing.TB, d time.Duration) { c.runUntil(t, c.Now().Add(d)) }

// sleep blocks a test server handler for d of virtual time, or until its client gives
// up (abortConn) or goes away (ctx). While it sleeps the handler counts as parked: it
// holds up the client's callback, not the clock.
func (c *vclock) sleep(client string, ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	woke := make(chan struct{})
	sl := &sleeper{t: &vtimer{c: c}, aborted: make(chan struct{})}
	sl.t.f = func() {
		c.mu.Lock()
		c.parked--
		delete(c.sleepers, client)
		c.mu.Unlock()
		close(woke)
	}
	c.mu.Lock()
	if c.sleepers == nil {
		c.sleepers = map[string]*sleeper{}
	}
	c.sleepers[client] = sl
	c.parked++
	c.arm(sl.t, d)
	c.mu.Unlock()
	select {
	case <-woke:
	case <-sl.aborted:
	case <-ctx.Done():
		c.mu.Lock()
		removed := c.remove(sl.t)
		if removed {
			c.parked--
			delete(c.sleepers, client)
			c.cond.Broadcast()
		}
		c.mu.Unlock()
		if !removed {
			select { // the wake-up fired and is finishing, or the client aborted
			case <-woke:
			case <-sl.aborted:
			}
		}
	}
}

// abortConn unparks the handler serving the client at addr: called from the client's
// timeout callback, so the clock never sees the client's callback as held up by a
// handler it no longer waits for.
func (c *vclock) abortConn(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sl := c.sleepers[addr]; sl != nil && c.remove(sl.t) {
		c.parked--
		delete(c.sleepers, addr)
		close(sl.aborted)
		c.cond.Broadcast()
	}
}

// watchedConn tells the clock when the client aborts a request on it (its deadline
// pushed into the past, as the timeout callback does).
type watchedConn struct {
	net.Conn
	c *vclock
}

func (w watchedConn) SetDeadline(t time.Time) error {
	if t.Before(time.Unix(2, 0)) {
		w.c.abortConn(w.Conn.LocalAddr().String())
	}
	return w.Conn.SetDeadline(t)
}

// dial is the test viewers' dialer.
func (c *vclock) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	nc, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return watchedConn{Conn: nc, c: c}, nil
}

func TestVClockOrdersTimersAndWaitsForCallbacks(t *testing.T) {
	c := newVClock(time.Unix(1000, 0))
	var (
		mu  sync.Mutex
		got []string
	)
	note := func(s string) { mu.Lock(); got = append(got, s); mu.Unlock() }
	c.AfterFunc(2*time.Second, func() { note("b") })
	c.AfterFunc(time.Second, func() {
		note("a")
		c.AfterFunc(500*time.Millisecond, func() { note("a+") }) // armed from a callback
	})
	stopped := c.AfterFunc(1500*time.Millisecond, func() { note("never") })
	stopped.Stop()
	c.run(t, 3*time.Second)
	if s := fmt.Sprint(got); s != "[a a+ b]" {
		t.Fatalf("fired %v, want [a a+ b]", got)
	}
	if now := c.Now(); !now.Equal(time.Unix(1003, 0)) {
		t.Fatalf("now %v, want 1003", now.Unix())
	}
}
