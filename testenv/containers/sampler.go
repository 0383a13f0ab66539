package containers

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/stampede-live/stampede/internal/promtext"
	"github.com/stampede-live/stampede/testenv/local"
)

// Sampler scrapes every server's /metrics through its published port and returns the
// same figures as testenv/local's Sampler, so a run's servers.json and summary read
// alike in both environments. Counters are totals since the topology started, added up
// over restarts; CPU time is the server's own process_cpu_seconds_total (read inside
// its container). Use one Sampler per topology, from one goroutine at a time.
type Sampler struct {
	t       *Topology
	timeout time.Duration

	mu    sync.Mutex // protects state
	state map[string]*sampleState
}

// sampleState is what the sampler keeps of one service between samples.
type sampleState struct {
	client *http.Client
	run    int             // the run the counters' last readings belong to
	counts *local.Counters // the service's counters, totalled over its runs
}

// NewSampler returns a sampler for t.
func (t *Topology) NewSampler() *Sampler {
	return &Sampler{t: t, timeout: local.DefaultScrapeTimeout, state: map[string]*sampleState{}}
}

// Sample scrapes every service at once.
func (s *Sampler) Sample(ctx context.Context) local.Sample {
	return local.SampleAll(ctx, s.t.Services(), (*Service).Name, s.sampleOne)
}

func (s *Sampler) stateOf(name string) *sampleState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.state[name]
	if !ok {
		// The scrape still gets through when the server is out of file descriptors.
		st = &sampleState{client: promtext.NewClient(s.timeout), counts: local.NewCounters()}
		s.state[name] = st
	}
	return st
}

func (s *Sampler) sampleOne(ctx context.Context, svc *Service) local.Figures {
	st := s.stateOf(svc.name)
	f := local.Figures{Role: svc.kind(), Pid: svc.Pid()}
	if f.Role == local.RoleMirror {
		f.Kind = local.MirrorStampede
	}
	if run := svc.Runs(); run != st.run {
		st.counts.NewRun() // a new run counts from zero
		st.run = run
	}
	if !svc.Running() {
		f.Err = "not running"
		st.fill(&f)
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	fams, err := promtext.Scrape(ctx, st.client, svc.MetricsURL())
	if err != nil {
		f.Err = err.Error()
		st.fill(&f)
		return f
	}
	f.Up = true
	st.counts.Add("cpu", promtext.Sum(fams["process_cpu_seconds_total"], nil))
	local.ReadStampede(fams, f.Role, st.counts, &f)
	st.fill(&f)
	return f
}

// fill copies the totals into f, CPU time included.
func (st *sampleState) fill(f *local.Figures) {
	st.counts.Fill(f)
	f.CPUSeconds = st.counts.Total("cpu")
}
