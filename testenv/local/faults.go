package local

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
)

// FaultAction is what a fault does.
type FaultAction string

// Fault actions (the scenario file's `faults[].action`).
const (
	FaultKill    FaultAction = "kill"    // SIGKILL the process group; no restart until a restart fault
	FaultStop    FaultAction = "stop"    // SIGSTOP: hung, connections open; Until sends SIGCONT
	FaultCont    FaultAction = "cont"    // SIGCONT
	FaultRestart FaultAction = "restart" // stop gracefully if running, start, wait for health
	FaultDelay   FaultAction = "delay"   // add Delay to a link's round trip, until Until
)

// Fault is one scheduled fault, timed from the start of the run.
type Fault struct {
	At     time.Duration
	Action FaultAction
	Target string        // a process name, or a link name for delay
	Until  time.Duration // stop, delay: when it ends (0: never)
	Delay  time.Duration // delay: round trip added
}

// Controller is what process faults act on; *Process implements it.
type Controller interface {
	Kill() error
	Pause() error
	Resume() error
	Restart(ctx context.Context) error
}

var _ Controller = (*Process)(nil)

// Delayer is what a delay fault changes; *faultproxy.Proxy implements it.
type Delayer interface {
	SetDelay(time.Duration)
	Delay() time.Duration
}

// Targets resolves fault targets by name.
type Targets struct {
	Process func(name string) (Controller, bool)
	Link    func(name string) (Delayer, bool)
}

// Applied is one step of a fault plan as it happened.
type Applied struct {
	Fault Fault
	Step  string    // what was done: kill, stop, cont, restart, delay +300ms, delay -300ms
	At    time.Time // when (on the plan's clock)
	Err   error     // the step failed (the process was not running, …); the plan goes on
}

func (a Applied) String() string {
	s := fmt.Sprintf("%s %s", a.Step, a.Fault.Target)
	if a.Err != nil {
		s += " failed: " + a.Err.Error()
	}
	return s
}

// Step is one action of a fault plan, at a time from the start of the run.
type Step struct {
	At    time.Duration
	Fault Fault
	Name  string // what is done: kill, stop, cont, restart, delay +300ms, …
	Apply func(ctx context.Context) error
}

// RunFaults applies faults at start+At on clk (nil: the wall clock), in time order,
// calling onApply (if set) after each step. Every target is resolved before anything
// happens: an unknown one is an error and nothing runs. A step that fails is reported
// and the plan goes on. It returns when every step is done, or ctx's error when ctx
// ends first. Steps run one after another, so a restart that waits for its health
// check delays the steps behind it.
func RunFaults(ctx context.Context, clk clock.Clock, start time.Time, faults []Fault, t Targets, onApply func(Applied)) error {
	clk = clock.Or(clk)
	steps, err := plan(faults, t)
	if err != nil {
		return err
	}
	return RunSteps(ctx, clk, start, steps, func(s Step, _ time.Time, err error) {
		if onApply != nil {
			onApply(Applied{Fault: s.Fault, Step: s.Name, At: clk.Now(), Err: err})
		}
	})
}

// RunSteps applies steps, already in time order, at start+At on clk, calling done
// after each with when it was issued and its error (a step that fails does not stop
// the plan). It returns when every step is done, or ctx's error when ctx ends first.
func RunSteps(ctx context.Context, clk clock.Clock, start time.Time, steps []Step, done func(s Step, issued time.Time, err error)) error {
	for _, s := range steps {
		if wait := start.Add(s.At).Sub(clk.Now()); wait > 0 {
			tm := clk.NewTimer(wait)
			select {
			case <-tm.C():
			case <-ctx.Done():
				tm.Stop()
				return ctx.Err()
			}
		}
		issued := clk.Now()
		done(s, issued, s.Apply(ctx))
	}
	return nil
}

// plan resolves targets and expands faults with an end (stop until, delay until) into
// two steps.
func plan(faults []Fault, t Targets) ([]Step, error) {
	var steps []Step
	for i, f := range faults {
		if f.At < 0 || f.Until != 0 && f.Until <= f.At {
			return nil, fmt.Errorf("local: fault %d (%s %s): until %s is not after at %s", i, f.Action, f.Target, f.Until, f.At)
		}
		if f.Action == FaultDelay {
			if t.Link == nil {
				return nil, fmt.Errorf("local: fault %d: delay %s: no links to delay", i, f.Target)
			}
			d, ok := t.Link(f.Target)
			if !ok {
				return nil, fmt.Errorf("local: fault %d: no link %q to delay", i, f.Target)
			}
			if f.Delay <= 0 {
				return nil, fmt.Errorf("local: fault %d: delay %s: Delay must be positive", i, f.Target)
			}
			add := f.Delay
			steps = append(steps, Step{f.At, f, "delay +" + add.String(), func(context.Context) error {
				d.SetDelay(d.Delay() + add)
				return nil
			}})
			if f.Until > 0 {
				steps = append(steps, Step{f.Until, f, "delay -" + add.String(), func(context.Context) error {
					d.SetDelay(max(d.Delay()-add, 0))
					return nil
				}})
			}
			continue
		}
		if t.Process == nil {
			return nil, fmt.Errorf("local: fault %d: no processes to act on", i)
		}
		c, ok := t.Process(f.Target)
		if !ok {
			return nil, fmt.Errorf("local: fault %d: no process %q", i, f.Target)
		}
		switch f.Action {
		case FaultKill:
			steps = append(steps, Step{f.At, f, "kill", func(context.Context) error { return c.Kill() }})
		case FaultStop:
			steps = append(steps, Step{f.At, f, "stop", func(context.Context) error { return c.Pause() }})
			if f.Until > 0 {
				steps = append(steps, Step{f.Until, f, "cont", func(context.Context) error { return c.Resume() }})
			}
		case FaultCont:
			steps = append(steps, Step{f.At, f, "cont", func(context.Context) error { return c.Resume() }})
		case FaultRestart:
			steps = append(steps, Step{f.At, f, "restart", c.Restart})
		default:
			return nil, fmt.Errorf("local: fault %d: unknown action %q", i, f.Action)
		}
		if f.Until != 0 && f.Action != FaultStop {
			return nil, fmt.Errorf("local: fault %d: %s does not take an end time", i, f.Action)
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
	return steps, nil
}

// Targets returns fault targets for this supervisor's processes and the given links
// (delay targets, e.g. "mirror-1" → the proxy in front of mirror-1's upstream). Each
// applied step is also recorded as an EventFault.
func (s *Supervisor) Targets(links map[string]Delayer) Targets {
	return Targets{
		Process: func(name string) (Controller, bool) {
			p, ok := s.Process(name)
			if !ok {
				return nil, false
			}
			return p, true
		},
		Link: func(name string) (Delayer, bool) {
			d, ok := links[name]
			return d, ok
		},
	}
}

// RecordFault is an onApply for RunFaults that logs each step as an EventFault.
func (s *Supervisor) RecordFault(a Applied) {
	s.emit(a.Fault.Target, EventFault, a.String())
}
