package clock

import (
	"testing"
	"time"
)

func TestFakeTimersFireInOrderWhenDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(1 * time.Second)
	f.Advance(500 * time.Millisecond)
	select {
	case <-a.C():
		t.Fatal("a fired early")
	case <-b.C():
		t.Fatal("b fired early")
	default:
	}
	f.Advance(time.Second)
	if got := <-b.C(); !got.Equal(start.Add(time.Second)) {
		t.Fatalf("b fired with %v", got)
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	f.Advance(time.Second)
	<-a.C()
	if f.Timers() != 0 {
		t.Fatalf("timers left: %d", f.Timers())
	}
}

func TestFakeStopAndReset(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an armed timer reported inactive")
	}
	if tm.Stop() {
		t.Fatal("second Stop reported active")
	}
	f.Advance(2 * time.Second)
	select {
	case <-tm.C():
		t.Fatal("stopped timer fired")
	default:
	}
	tm.Reset(time.Second)
	f.Advance(time.Second)
	<-tm.C()
	// A zero or negative reset fires at once, like time.Timer.
	tm.Reset(0)
	<-tm.C()
}

func TestWaitTimers(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	go func() { f.NewTimer(time.Second) }()
	if !f.WaitTimers(1, 5*time.Second) {
		t.Fatal("WaitTimers did not see the armed timer")
	}
	if f.WaitTimers(2, 10*time.Millisecond) {
		t.Fatal("WaitTimers reported a timer that does not exist")
	}
}

func TestSetNeverMovesBackwards(t *testing.T) {
	start := time.Unix(100, 0)
	f := NewFake(start)
	f.Set(time.Unix(50, 0))
	if !f.Now().Equal(start) {
		t.Fatalf("clock moved backwards to %v", f.Now())
	}
	if Or(nil) != Real || Or(f) != f {
		t.Fatal("Or does not pick the configured clock")
	}
}
