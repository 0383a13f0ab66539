package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stampede-live/stampede/testenv/containers"
	"github.com/stampede-live/stampede/testenv/local"
)

// Environments a tuning's relay runs in (RunConfig.Env).
const (
	EnvLocal      = "local"
	EnvContainers = "containers"
)

// relay is a running topology in either environment: what runTuning needs from it.
type relay interface {
	ViewerURLs() []string
	CounterURL() string
	// Names are the servers in report order: origin, mirror-1 …, counter.
	Names() []string
	Server(name string) server
	Sample(ctx context.Context) local.Sample
	RunFaults(ctx context.Context, start time.Time, faults []local.Fault, onApply func(local.Applied)) error
	Events() []local.Event
	Describe() string
	Close() error
}

// server is one server's record: *local.Process and *containers.Service both are.
type server interface {
	Addr() string
	Runs() int
	Crashes() int
	Exits() []local.Exit
}

// localRelay adapts *local.Topology.
type localRelay struct {
	*local.Topology
	sampler *local.Sampler
	logDir  string
}

func (r *localRelay) Names() []string {
	names := []string{local.RoleOrigin}
	for _, m := range r.Mirrors() {
		names = append(names, m.Name)
	}
	if r.Counter() != nil {
		names = append(names, local.RoleCounter)
	}
	return names
}

func (r *localRelay) Server(name string) server {
	switch name {
	case local.RoleOrigin:
		return r.Origin()
	case local.RoleCounter:
		if c := r.Counter(); c != nil {
			return c
		}
		return nil
	}
	for _, m := range r.Mirrors() {
		if m.Name == name {
			return m.Process
		}
	}
	return nil
}

func (r *localRelay) Sample(ctx context.Context) local.Sample { return r.sampler.Sample(ctx) }

func (r *localRelay) RunFaults(ctx context.Context, start time.Time, faults []local.Fault, onApply func(local.Applied)) error {
	sup := r.Supervisor()
	return local.RunFaults(ctx, nil, start, faults, sup.Targets(r.Links()), func(a local.Applied) {
		sup.RecordFault(a)
		if onApply != nil {
			onApply(a)
		}
	})
}

func (r *localRelay) Events() []local.Event { return r.Supervisor().Events() }

func (r *localRelay) Describe() string {
	return fmt.Sprintf("origin %s, %s, counter %s (logs in %s)", r.Origin().Addr(), mirrorList(r.Topology), r.CounterURL(), r.logDir)
}

// containersRelay adapts *containers.Topology.
type containersRelay struct {
	*containers.Topology
	sampler *containers.Sampler
	logDir  string
}

func (r *containersRelay) Names() []string {
	names := []string{local.RoleOrigin}
	for _, m := range r.Mirrors() {
		names = append(names, m.Name())
	}
	if r.Counter() != nil {
		names = append(names, local.RoleCounter)
	}
	return names
}

func (r *containersRelay) Server(name string) server {
	if s, ok := r.Service(name); ok {
		return s
	}
	return nil
}

func (r *containersRelay) Sample(ctx context.Context) local.Sample { return r.sampler.Sample(ctx) }

func (r *containersRelay) RunFaults(ctx context.Context, start time.Time, faults []local.Fault, onApply func(local.Applied)) error {
	return r.Topology.RunFaults(ctx, nil, start, faults, onApply)
}

func (r *containersRelay) Describe() string {
	var parts []string
	for _, s := range r.Services() {
		parts = append(parts, s.Name()+" "+s.Addr())
	}
	return fmt.Sprintf("containers %s, counter (via proxy) %s (logs in %s)", strings.Join(parts, ", "), r.CounterURL(), r.logDir)
}

// startRelay starts tc in cfg's environment.
func startRelay(ctx context.Context, cfg RunConfig, tc local.TopologyConfig) (relay, error) {
	if cfg.Env != EnvContainers {
		topo, err := local.StartTopology(ctx, tc)
		if err != nil {
			return nil, err
		}
		return &localRelay{Topology: topo, sampler: topo.NewSampler(), logDir: tc.LogDir}, nil
	}
	spec, err := containers.FromLocal(tc, cfg.image)
	if err != nil {
		return nil, err
	}
	topo, err := containers.StartTopology(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &containersRelay{Topology: topo, sampler: topo.NewSampler(), logDir: tc.LogDir}, nil
}
