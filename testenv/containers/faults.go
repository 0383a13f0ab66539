package containers

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/testenv/local"
)

// Fault actions beyond testenv/local's kill, stop, cont and restart.
const (
	// FaultPartition disconnects the target from the upstream network (a mirror from
	// the origin; the origin from every mirror) until Until, then reconnects it.
	FaultPartition local.FaultAction = "partition"
	// FaultHeal reconnects a partitioned target.
	FaultHeal local.FaultAction = "heal"
)

// RunFaults applies faults at start+At on clk (nil: the wall clock), in time order,
// with testenv/local's meaning: kill (SIGKILL; no restart until a restart fault),
// stop (pause: hung, connections kept; Until unpauses), cont (unpause), restart
// (stop, start, wait for health) — plus partition (Until heals) and heal. delay is
// refused: it needs a proxy on the mirror's upstream link, which the containers run
// does not have (a partition is the network fault here). Every target is resolved
// before anything happens; a step that fails is reported to onApply and the plan goes
// on. Each step is also recorded as an EventFault.
func (t *Topology) RunFaults(ctx context.Context, clk clock.Clock, start time.Time, faults []local.Fault, onApply func(local.Applied)) error {
	clk = clock.Or(clk)
	steps, err := t.plan(faults)
	if err != nil {
		return err
	}
	// At is when the step was issued: Docker's answer to a kill or a disconnect can
	// take seconds on a busy host, long after the fault took effect.
	return local.RunSteps(ctx, clk, start, steps, func(s local.Step, issued time.Time, err error) {
		a := local.Applied{Fault: s.Fault, Step: s.Name, Err: err, At: issued}
		t.emit(s.Fault.Target, local.EventFault, a.String())
		if onApply != nil {
			onApply(a)
		}
	})
}

// plan resolves targets and expands faults with an end into two steps.
func (t *Topology) plan(faults []local.Fault) ([]local.Step, error) {
	var steps []local.Step
	add := func(at time.Duration, f local.Fault, name string, apply func(context.Context) error) {
		steps = append(steps, local.Step{At: at, Fault: f, Name: name, Apply: apply})
	}
	for i, f := range faults {
		if f.At < 0 || f.Until != 0 && f.Until <= f.At {
			return nil, fmt.Errorf("containers: fault %d (%s %s): until %s is not after at %s", i, f.Action, f.Target, f.Until, f.At)
		}
		if f.Action == local.FaultDelay {
			return nil, fmt.Errorf("containers: fault %d: delay %s: the containers environment has no proxy on upstream links to slow; use partition, or run it with the local environment", i, f.Target)
		}
		s, ok := t.Service(f.Target)
		if !ok {
			return nil, fmt.Errorf("containers: fault %d: no service %q", i, f.Target)
		}
		if f.Until != 0 && f.Action != local.FaultStop && f.Action != FaultPartition {
			return nil, fmt.Errorf("containers: fault %d: %s does not take an end time", i, f.Action)
		}
		switch f.Action {
		case local.FaultKill:
			add(f.At, f, "kill", func(context.Context) error { return s.Kill() })
		case local.FaultStop:
			add(f.At, f, "pause", func(context.Context) error { return s.Pause() })
			if f.Until > 0 {
				add(f.Until, f, "unpause", func(context.Context) error { return s.Resume() })
			}
		case local.FaultCont:
			add(f.At, f, "unpause", func(context.Context) error { return s.Resume() })
		case local.FaultRestart:
			add(f.At, f, "restart", s.Restart)
		case FaultPartition:
			if s.upstream() == nil {
				return nil, fmt.Errorf("containers: fault %d: %s is not on the upstream network", i, f.Target)
			}
			add(f.At, f, "partition", s.Partition)
			if f.Until > 0 {
				add(f.Until, f, "heal", s.Heal)
			}
		case FaultHeal:
			add(f.At, f, "heal", s.Heal)
		default:
			return nil, fmt.Errorf("containers: fault %d: unknown action %q", i, f.Action)
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
	return steps, nil
}
