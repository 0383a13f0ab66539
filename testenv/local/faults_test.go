package local

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
)

// fakeTarget records what faults did to it.
type fakeTarget struct {
	name string
	log  *callLog
	err  error
}

type callLog struct {
	mu    sync.Mutex // protects calls
	calls []string
}

func (l *callLog) add(s string) {
	l.mu.Lock()
	l.calls = append(l.calls, s)
	l.mu.Unlock()
}

func (l *callLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls...)
}

func (f *fakeTarget) Kill() error                   { f.log.add("kill " + f.name); return f.err }
func (f *fakeTarget) Pause() error                  { f.log.add("stop " + f.name); return f.err }
func (f *fakeTarget) Resume() error                 { f.log.add("cont " + f.name); return f.err }
func (f *fakeTarget) Restart(context.Context) error { f.log.add("restart " + f.name); return f.err }

type fakeLink struct {
	mu sync.Mutex // protects d
	d  time.Duration
}

func (l *fakeLink) SetDelay(d time.Duration) { l.mu.Lock(); l.d = d; l.mu.Unlock() }
func (l *fakeLink) Delay() time.Duration     { l.mu.Lock(); defer l.mu.Unlock(); return l.d }

func TestRunFaultsOnSchedule(t *testing.T) {
	log := &callLog{}
	link := &fakeLink{d: 20 * time.Millisecond} // the topology's own round trip stays under the fault
	broken := &fakeTarget{name: "counter", log: log, err: errors.New("not running")}
	targets := Targets{
		Process: func(name string) (Controller, bool) {
			switch name {
			case "origin", "mirror-2":
				return &fakeTarget{name: name, log: log}, true
			case "counter":
				return broken, true
			}
			return nil, false
		},
		Link: func(name string) (Delayer, bool) { return link, name == "mirror-1" },
	}
	faults := []Fault{
		{At: 3 * time.Second, Action: FaultRestart, Target: "origin"},
		{At: 1 * time.Second, Action: FaultKill, Target: "origin"},
		{At: 2 * time.Second, Until: 4 * time.Second, Action: FaultStop, Target: "mirror-2"},
		{At: 1 * time.Second, Until: 5 * time.Second, Action: FaultDelay, Target: "mirror-1", Delay: time.Second},
		{At: 6 * time.Second, Action: FaultCont, Target: "counter"},
	}
	start := time.Unix(100, 0)
	clk := clock.NewFake(start)
	var applied []Applied
	var mu sync.Mutex // protects applied
	done := make(chan error, 1)
	go func() {
		done <- RunFaults(context.Background(), clk, start, faults, targets, func(a Applied) {
			mu.Lock()
			applied = append(applied, a)
			mu.Unlock()
		})
	}()
	prevCalls, prevDelay := "", 20*time.Millisecond
	for _, tc := range []struct {
		at    time.Duration
		calls string
		delay time.Duration
	}{
		{1 * time.Second, "kill origin", 1020 * time.Millisecond},                                                       // kill and delay on at 1 s
		{2 * time.Second, "kill origin,stop mirror-2", 1020 * time.Millisecond},                                         // SIGSTOP at 2 s
		{3 * time.Second, "kill origin,stop mirror-2,restart origin", 1020 * time.Millisecond},                          // restart at 3 s
		{4 * time.Second, "kill origin,stop mirror-2,restart origin,cont mirror-2", 1020 * time.Millisecond},            // until: SIGCONT at 4 s
		{5 * time.Second, "kill origin,stop mirror-2,restart origin,cont mirror-2", 20 * time.Millisecond},              // delay ends at 5 s
		{6 * time.Second, "kill origin,stop mirror-2,restart origin,cont mirror-2,cont counter", 20 * time.Millisecond}, // a failing step
	} {
		if !clk.WaitTimers(1, 10*time.Second) {
			t.Fatalf("plan not waiting before %s", tc.at)
		}
		// Nothing of this step happened before its time.
		if got := strings.Join(log.get(), ","); got != prevCalls || link.Delay() != prevDelay {
			t.Fatalf("just before %s: calls %s delay %s, want %s and %s", tc.at, got, link.Delay(), prevCalls, prevDelay)
		}
		clk.Set(start.Add(tc.at))
		deadline := time.Now().Add(10 * time.Second)
		for strings.Join(log.get(), ",") != tc.calls || link.Delay() != tc.delay {
			if time.Now().After(deadline) {
				t.Fatalf("at %s: calls %v delay %s, want %s and %s", tc.at, log.get(), link.Delay(), tc.calls, tc.delay)
			}
			time.Sleep(time.Millisecond) // polling the fake targets
		}
		prevCalls, prevDelay = tc.calls, tc.delay
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 7 {
		t.Fatalf("applied %d steps, want 7: %v", len(applied), applied)
	}
	last := applied[len(applied)-1]
	if last.Err == nil || !strings.Contains(last.String(), "cont counter failed: not running") {
		t.Errorf("failing step reported as %q", last.String())
	}
}

func TestRunFaultsRejectsUnknownTargetsBeforeActing(t *testing.T) {
	log := &callLog{}
	targets := Targets{Process: func(name string) (Controller, bool) {
		return &fakeTarget{name: name, log: log}, name == "origin"
	}}
	for _, tc := range []struct {
		faults []Fault
		want   string
	}{
		{[]Fault{{At: 0, Action: FaultKill, Target: "origin"}, {At: time.Second, Action: FaultKill, Target: "mirror-9"}}, `no process "mirror-9"`},
		{[]Fault{{At: 0, Action: FaultDelay, Target: "mirror-1", Delay: time.Second}}, "no links"},
		{[]Fault{{At: time.Second, Until: time.Second, Action: FaultStop, Target: "origin"}}, "not after"},
		{[]Fault{{At: 0, Until: time.Second, Action: FaultKill, Target: "origin"}}, "does not take an end time"},
		{[]Fault{{At: 0, Action: "explode", Target: "origin"}}, "unknown action"},
	} {
		err := RunFaults(context.Background(), nil, time.Now(), tc.faults, targets, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.faults, err, tc.want)
		}
	}
	if calls := log.get(); len(calls) != 0 {
		t.Errorf("faults applied despite a bad plan: %v", calls)
	}
}

func TestRunFaultsStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := clock.NewFake(time.Unix(0, 0))
	log := &callLog{}
	targets := Targets{Process: func(name string) (Controller, bool) { return &fakeTarget{name: name, log: log}, true }}
	done := make(chan error, 1)
	go func() {
		done <- RunFaults(ctx, clk, clk.Now(), []Fault{{At: time.Hour, Action: FaultKill, Target: "origin"}}, targets, nil)
	}()
	clk.WaitTimers(1, 10*time.Second)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || len(log.get()) != 0 {
		t.Errorf("err %v calls %v", err, log.get())
	}
}

// TestFaultsAgainstRealProcesses drives a supervisor's processes through Targets.
func TestFaultsAgainstRealProcesses(t *testing.T) {
	s := newSupervisor(t, Config{})
	p := startChild(t, s, "origin", nil)
	link := &fakeLink{}
	var applied []string
	err := RunFaults(context.Background(), nil, time.Now(), []Fault{
		{Action: FaultStop, Target: "origin"},
		{Action: FaultCont, Target: "origin"},
		{Action: FaultDelay, Target: "mirror-1", Delay: 300 * time.Millisecond},
		{Action: FaultKill, Target: "origin"},
	}, s.Targets(map[string]Delayer{"mirror-1": link}), func(a Applied) {
		s.RecordFault(a)
		applied = append(applied, a.String())
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Running() || link.Delay() != 300*time.Millisecond || len(applied) != 4 {
		t.Errorf("running %v delay %s applied %v", p.Running(), link.Delay(), applied)
	}
	n := 0
	for _, e := range s.Events() {
		if e.Kind == EventFault {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d fault events, want 4", n)
	}
}
