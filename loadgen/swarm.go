package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-live/stampede/internal/serverkit"
	"github.com/stampede-live/stampede/loadgen/report"
)

// Swarm defaults.
const (
	// DefaultLagLimit: a run whose timer lag p99 exceeds this is generator-bound, hence
	// invalid (the example limit).
	DefaultLagLimit = 100 * time.Millisecond
	// DefaultStopGrace: at the end of a run, requests in flight get this long to finish
	// (and be recorded) before connections are closed under them.
	DefaultStopGrace = 2 * time.Second
)

// Targets is where viewers play from.
type Targets struct {
	// Master is the multivariant (or media) playlist URL. Its path (and query) is what
	// viewers load below each mirror's base URL.
	Master string
	// Mirrors are base URLs (scheme://host:port[/prefix]). Viewers measure each one's
	// round trip at join and use the nearest, moving to the next after repeated errors.
	// The origin itself may be one of them. Empty: Master's own server is the only one.
	Mirrors []string
	// Counter is the viewer counter's base URL (DefaultHeartbeatPath is appended when it
	// has no path) or its full heartbeat URL; "" disables heartbeats.
	Counter string
}

// SwarmConfig configures a run of simulated viewers.
type SwarmConfig struct {
	Targets  Targets
	Player   PlayerConfig
	Arrivals Arrivals
	// Duration is the run's length from the first arrival's schedule start; 0 runs until
	// the context passed to Run ends.
	Duration time.Duration
	// SourceIPs is SourceIPsAuto (default), SourceIPsOn or SourceIPsOff; SourceNet is
	// where the addresses come from (DefaultSourceNet).
	SourceIPs string
	SourceNet string
	// Results, when set, receives every request (or a SampleRate share of them) in
	// vegeta's encoding. SampleRate 0 means all.
	Results    io.Writer
	SampleRate float64
	// Labels are constant labels on every /metrics series (run, tuning).
	Labels map[string]string
	// Progress, when set, gets a one-line status each second (pass a terminal only).
	Progress io.Writer
	// LagLimit is the timer-lag p99 beyond which the run is generator-bound
	// (DefaultLagLimit); StopGrace is how long requests in flight may finish at the end
	// (DefaultStopGrace).
	LagLimit  time.Duration
	StopGrace time.Duration
	// Name labels per-request results (vegeta's attack name); default "stampede".
	Name string
}

// Swarm runs thousands of viewers in one process.
type Swarm struct {
	cfg     SwarmConfig
	env     *viewerEnv
	rec     *Recorder
	reg     *prometheus.Registry
	sources *sourceAllocator // nil: the kernel chooses
	results *resultsWriter

	mu      sync.Mutex // protects viewers, ran
	viewers map[*Viewer]timer
	ran     bool
	wg      sync.WaitGroup // one per started viewer, done when it finished
}

// NewSwarm validates cfg and prepares a run. Errors name the field.
func NewSwarm(cfg SwarmConfig) (*Swarm, error) {
	player, err := cfg.Player.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Player = player
	if cfg.Arrivals, err = cfg.Arrivals.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.Duration < 0 {
		return nil, fmt.Errorf("Duration: %v is negative", cfg.Duration)
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return nil, fmt.Errorf("SampleRate: %v is outside [0, 1]", cfg.SampleRate)
	}
	if cfg.SampleRate == 0 {
		cfg.SampleRate = 1
	}
	if cfg.LagLimit == 0 {
		cfg.LagLimit = DefaultLagLimit
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.LagLimit < 0 || cfg.StopGrace < 0 {
		return nil, errors.New("LagLimit, StopGrace: must not be negative")
	}
	if cfg.Name == "" {
		cfg.Name = "stampede"
	}
	if cfg.SourceIPs == "" {
		cfg.SourceIPs = SourceIPsAuto
	}
	if cfg.SourceNet == "" {
		cfg.SourceNet = DefaultSourceNet
	}

	env := &viewerEnv{cfg: player, sched: realScheduler{}}
	if err := env.setTargets(cfg.Targets); err != nil {
		return nil, err
	}
	s := &Swarm{cfg: cfg, env: env, viewers: map[*Viewer]timer{}}
	switch cfg.SourceIPs {
	case SourceIPsOff:
	case SourceIPsAuto, SourceIPsOn:
		loop := true
		for _, ep := range env.allEndpoints() {
			loop = loop && ep.isLoopback(context.Background())
		}
		if !loop && cfg.SourceIPs == SourceIPsOn {
			return nil, errors.New("SourceIPs: on needs every target on loopback")
		}
		if loop {
			if s.sources, err = newSourceAllocator(cfg.SourceNet); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("SourceIPs: %q is not %s, %s or %s", cfg.SourceIPs, SourceIPsAuto, SourceIPsOn, SourceIPsOff)
	}

	reg, r := serverkit.NewRegistry(serverkit.Labels(cfg.Labels))
	names := make([]string, len(env.mirrors))
	for i, ep := range env.mirrors {
		names[i] = ep.name
	}
	s.reg = reg
	s.rec = NewRecorder(r, names)
	s.rec.m.target.Set(float64(cfg.Arrivals.Target()))
	if cfg.Results != nil {
		s.results = newResultsWriter(cfg.Results, cfg.SampleRate, cfg.Name)
		s.rec.results = s.results
	}
	env.rec = s.rec
	env.ended = s.viewerEnded
	return s, nil
}

// setTargets parses the URLs viewers use.
func (e *viewerEnv) setTargets(t Targets) error {
	e.masterPath = DefaultMasterPath
	if t.Master != "" {
		ep, p, err := parseEndpoint(t.Master)
		if err != nil {
			return fmt.Errorf("Targets.Master: %v", err)
		}
		if p == "" || p == "/" {
			return fmt.Errorf("Targets.Master: %q names no playlist", t.Master)
		}
		e.masterPath = p
		if len(t.Mirrors) == 0 {
			ep.prefix = ""
			e.mirrors = []*endpoint{ep}
		}
	} else if len(t.Mirrors) == 0 {
		return errors.New("Targets: give Master, Mirrors, or both")
	}
	for i, m := range t.Mirrors {
		ep, _, err := parseEndpoint(m)
		if err != nil {
			return fmt.Errorf("Targets.Mirrors[%d]: %v", i, err)
		}
		u, _ := url.Parse(m)
		if u.RawQuery != "" {
			return fmt.Errorf("Targets.Mirrors[%d]: %q: a base URL has no query", i, m)
		}
		e.mirrors = append(e.mirrors, ep)
	}
	if t.Counter != "" {
		ep, p, err := parseEndpoint(t.Counter)
		if err != nil {
			return fmt.Errorf("Targets.Counter: %v", err)
		}
		if p == "" || p == "/" {
			p = DefaultHeartbeatPath
		}
		e.counter, e.counterPath = ep, p
	}
	return nil
}

func (e *viewerEnv) allEndpoints() []*endpoint {
	eps := append([]*endpoint(nil), e.mirrors...)
	if e.counter != nil {
		eps = append(eps, e.counter)
	}
	return eps
}

// Handler serves /metrics (prefix stampede_viewers_, plus Go and process collectors)
// and /healthz.
func (s *Swarm) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", serverkit.MetricsHandler(s.reg))
	mux.HandleFunc("/healthz", serverkit.Healthz)
	return mux
}

// Recorder is where the run's observations accumulate.
func (s *Swarm) Recorder() *Recorder { return s.rec }

// Viewers returns a snapshot of the viewers in a session now.
func (s *Swarm) Viewers() []*Viewer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Viewer, 0, len(s.viewers))
	for v := range s.viewers {
		out = append(out, v)
	}
	return out
}

func (s *Swarm) viewerEnded(v *Viewer) {
	s.mu.Lock()
	if t, ok := s.viewers[v]; ok {
		if t != nil {
			t.Stop()
		}
		delete(s.viewers, v)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// Run starts viewers on the arrival schedule until Duration has passed or ctx ends, then
// stops them gracefully and returns what was recorded. A run cut short by ctx returns
// its partial result marked Incomplete, and no error.
func (s *Swarm) Run(ctx context.Context) (*Result, error) {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return nil, errors.New("a Swarm runs once")
	}
	s.ran = true
	s.mu.Unlock()

	cpu0 := cpuTime()
	start := time.Now()
	s.rec.begin(start)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.cfg.Duration > 0 {
		var c2 context.CancelFunc
		runCtx, c2 = context.WithDeadline(runCtx, start.Add(s.cfg.Duration))
		defer c2()
	}

	arrivalsDone := make(chan struct{})
	go func() {
		defer close(arrivalsDone)
		s.arrive(runCtx, start)
	}()

	tick := time.NewTicker(time.Second)
	next := start.Add(time.Second)
	var bound bool
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case now := <-tick.C:
			s.rec.lag(now.Sub(next))
			next = next.Add(time.Second)
			for !next.After(now) {
				next = next.Add(time.Second)
			}
			p := s.rec.tick(now)
			if s.lagP99() > s.cfg.LagLimit && !bound {
				bound = true
				s.rec.m.bound.Set(1)
			}
			if s.cfg.Progress != nil {
				s.progress(p)
			}
		}
	}
	tick.Stop()
	<-arrivalsDone

	// Graceful stop: no new requests; requests in flight get StopGrace to finish.
	stopAt := time.Now()
	s.rec.closing.Store(true)
	for _, v := range s.Viewers() {
		v.stop(reasonStopped)
	}
	idle := make(chan struct{})
	go func() { s.wg.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(s.cfg.StopGrace):
		for _, v := range s.Viewers() {
			v.abort()
		}
		<-idle
	}
	end := time.Now()
	s.rec.tick(end)
	if s.cfg.Progress != nil {
		fmt.Fprintln(s.cfg.Progress)
	}
	var resErr error
	if s.results != nil {
		if err := s.results.flush(); err != nil {
			resErr = fmt.Errorf("writing results: %w", err)
		}
	}
	gen := report.Generator{
		CPUSeconds:  (cpuTime() - cpu0).Seconds(),
		MaxRSSBytes: maxRSS(),
		LagP99Ms:    float64(s.lagP99()) / float64(time.Millisecond),
	}
	gen.Bound = s.lagP99() > s.cfg.LagLimit
	// Cut short: the caller's context ended before the planned duration. A run without
	// a duration ends when told to, which is its planned end.
	incomplete := s.cfg.Duration > 0 && ctx.Err() != nil && stopAt.Before(start.Add(s.cfg.Duration))
	return s.rec.result(start, end, s.cfg.Arrivals.Target(), gen, incomplete, s.cfg.LagLimit), resErr
}

// arrive starts viewers on the schedule until it ends or ctx does.
func (s *Swarm) arrive(ctx context.Context, start time.Time) {
	sch := newSchedule(s.cfg.Arrivals)
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	n := 0
	for {
		off, ok := sch.next()
		if !ok {
			return
		}
		due := start.Add(off)
		if d := time.Until(due); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		s.rec.lag(time.Since(due))
		s.join(n, sch.sessionLength())
		n++
	}
}

// join starts the n-th viewer.
func (s *Swarm) join(n int, length time.Duration) {
	var src = s.sourceAddr(n)
	v := newViewer(s.env, n, src)
	var end timer
	if length > 0 {
		end = s.env.sched.AfterFunc(length, func() { v.stop(reasonChurn) })
	}
	s.mu.Lock()
	s.viewers[v] = end
	s.mu.Unlock()
	s.wg.Add(1)
	v.start()
}

func (s *Swarm) sourceAddr(n int) net.Addr {
	if s.sources == nil {
		return nil
	}
	return s.sources.addr(n)
}

func (s *Swarm) lagP99() time.Duration {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return time.Duration(s.rec.lagHist.ValueAtQuantile(99)) * time.Microsecond
}

// progress prints one status line, overwriting the last.
func (s *Swarm) progress(p report.SeriesPoint) {
	reqs := p.Requests.Playlist + p.Requests.Segment + p.Requests.Heartbeat + p.Requests.Ping
	var errs int64
	for _, n := range p.Errors {
		errs += n
	}
	counter := "-"
	if p.CounterAnswer >= 0 {
		counter = fmt.Sprintf("%d", p.CounterAnswer)
	}
	line := fmt.Sprintf("[%4.0fs] viewers %d/%d  req/s %d  seg p99 %.0fms  stalled %d (+%d)  errors %d  counter %s/%d  lag p99 %.0fms",
		p.T, p.Active, s.cfg.Arrivals.Target(), reqs, p.SegmentMs.P99, p.Stalled, p.Stalls, errs, counter, p.Truth, p.LagP99Ms)
	fmt.Fprintf(s.cfg.Progress, "\r\033[K%s", strings.TrimSpace(line))
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is the process's peak resident set size in bytes (Linux reports KiB).
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}
