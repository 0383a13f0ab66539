package containers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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

// sampleState turns one service's raw counters, which restart from 0 with each run,
// into totals.
type sampleState struct {
	client *http.Client
	run    int                // the run the raw values belong to
	raw    map[string]float64 // last raw value of each counter, this run
	total  map[string]float64 // totals over every run
}

// NewSampler returns a sampler for t.
func (t *Topology) NewSampler() *Sampler {
	return &Sampler{t: t, timeout: local.DefaultScrapeTimeout, state: map[string]*sampleState{}}
}

// Sample scrapes every service at once.
func (s *Sampler) Sample(ctx context.Context) local.Sample {
	svcs := s.t.Services()
	figs := make([]local.Figures, len(svcs))
	var wg sync.WaitGroup
	for i, svc := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			figs[i] = s.sampleOne(ctx, svc)
		}()
	}
	wg.Wait()
	out := local.Sample{At: time.Now(), Procs: make(map[string]local.Figures, len(svcs))}
	for i, svc := range svcs {
		out.Procs[svc.name] = figs[i]
	}
	return out
}

func (s *Sampler) stateOf(name string) *sampleState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.state[name]
	if !ok {
		st = &sampleState{
			// One kept-alive connection per server: the scrape still gets through when
			// the server is out of file descriptors.
			client: &http.Client{Transport: &http.Transport{
				Proxy: nil, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: time.Minute,
				DialContext: (&net.Dialer{Timeout: s.timeout}).DialContext,
			}},
			raw: map[string]float64{}, total: map[string]float64{},
		}
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
		st.raw, st.run = map[string]float64{}, run // a new run counts from zero
	}
	if !svc.Running() {
		f.Err = "not running"
		st.fill(&f)
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	fams, err := scrapeFamilies(ctx, st.client, svc.MetricsURL())
	if err != nil {
		f.Err = err.Error()
		st.fill(&f)
		return f
	}
	f.Up = true
	sum := func(name string, keep func(map[string]string) bool) float64 { return sumFamily(fams[name], keep) }
	st.counter("cpu", sum("process_cpu_seconds_total", nil))
	f.OpenFDs = int64(sum("process_open_fds", nil))
	f.MaxFDs = int64(sum("process_max_fds", nil))
	switch f.Role {
	case local.RoleOrigin:
		st.counter("requests", sum("stampede_origin_requests_total", labelIn("kind", "master", "playlist", "segment")))
		st.counter("segments_built", sum("stampede_origin_segments_built_total", nil))
	case local.RoleMirror:
		st.counter("requests", sum("stampede_mirror_requests_total", nil))
		st.counter("hits", sum("stampede_mirror_requests_total", labelIn("result", "hit", "stale")))
		st.counter("upstream", sum("stampede_mirror_upstream_requests_total", nil))
		st.counter("upstream_segments", sum("stampede_mirror_upstream_requests_total", labelIn("kind", "segment")))
		st.counter("upstream_errors", sum("stampede_mirror_upstream_errors_total", nil))
		st.counter("emfile", sum("stampede_mirror_emfile_total", nil))
		st.counter("shed", sum("stampede_mirror_shed_total", nil))
		st.counter("sent_bytes", sum("stampede_mirror_sent_bytes_total", nil))
		f.Conns = int64(sum("stampede_mirror_client_connections", nil))
		if _, ok := fams["stampede_mirror_open_fds"]; ok {
			f.OpenFDs = int64(sum("stampede_mirror_open_fds", nil))
			f.MaxFDs = int64(sum("stampede_mirror_max_fds", nil))
		}
	case local.RoleCounter:
		st.counter("requests", sum("stampede_counter_heartbeats_total", nil))
		f.Viewers = int64(sum("stampede_counter_viewers", nil))
	}
	st.fill(&f)
	return f
}

// counter adds a raw counter reading to its total, treating a drop as a restart.
func (st *sampleState) counter(key string, v float64) {
	last, seen := st.raw[key]
	if !seen || v < last {
		st.total[key] += v
	} else {
		st.total[key] += v - last
	}
	st.raw[key] = v
}

func (st *sampleState) fill(f *local.Figures) {
	f.CPUSeconds = st.total["cpu"]
	f.Requests = st.total["requests"]
	f.Hits = st.total["hits"]
	f.Upstream = st.total["upstream"]
	f.UpstreamSegments = st.total["upstream_segments"]
	f.UpstreamErrors = st.total["upstream_errors"]
	f.EMFILE = st.total["emfile"]
	f.Shed = st.total["shed"]
	f.SentBytes = st.total["sent_bytes"]
	f.SegmentsBuilt = st.total["segments_built"]
}

// maxMetricsSize bounds one /metrics answer.
const maxMetricsSize = 8 << 20

func scrapeFamilies(ctx context.Context, c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsSize))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return fams, nil
}

// sumFamily adds up the values of a family's series that keep accepts (all when nil).
func sumFamily(f *dto.MetricFamily, keep func(map[string]string) bool) float64 {
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.GetMetric() {
		if keep != nil {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if !keep(labels) {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

func labelIn(name string, values ...string) func(map[string]string) bool {
	return func(l map[string]string) bool {
		for _, v := range values {
			if l[name] == v {
				return true
			}
		}
		return false
	}
}
