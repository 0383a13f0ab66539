package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stampede-live/stampede/internal/serverkit"
	"github.com/stampede-live/stampede/loadgen"
	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/testenv/containers"
	"github.com/stampede-live/stampede/testenv/local"
)

// Run defaults.
const (
	// DefaultScrapeInterval is how often the runner reads every server's /metrics for
	// the per-second series.
	DefaultScrapeInterval = time.Second
	// DefaultResultsSample is the share of requests written to a tuning's results.bin
	// (vegeta's encoding) when RunConfig.ResultsSample is 0.
	DefaultResultsSample = 0.1
)

// Files a run writes. Per run: Dir/summary.json. Per tuning, in Dir/<tuning>/:
// series.json (the viewers, per second), servers.json (every server, per second, and
// its totals), results.bin (requests in vegeta's encoding), events.log (starts, crashes,
// faults), logs/ (each process's output).
const (
	ServersFile = report.ServersFile
	ResultsFile = "results.bin"
	EventsFile  = "events.log"
	LogsDir     = "logs"
)

// RunConfig says where and how a scenario runs.
type RunConfig struct {
	// Binary is the stampede executable the servers run as (required): the CLI passes
	// its own (os.Executable), tests testbin.Stampede.
	Binary string
	// Dir is the run's output directory (required).
	Dir string
	// Run names the run in labels and the summary; default Dir's base name.
	Run string
	// Progress receives progress lines (nil: none). Terminal says it is a terminal, which
	// also gets the viewers' live status line.
	Progress io.Writer
	Terminal bool
	// OnTarget is called for every process serving /metrics as it starts (and for the
	// viewers), with its run/tuning labels: how `bench --prometheus` adds targets.
	OnTarget func(Target)
	// BeforeViewers, when set, is called once every process of a tuning has been
	// announced to OnTarget and before the first viewer arrives, with those targets.
	// `bench --prometheus` waits there until Prometheus has scraped each of them once, so
	// a dashboard's increase() over the run sees every event from zero (a startup that
	// happened before the first scrape would be lost). An error is noted, not fatal.
	BeforeViewers func(ctx context.Context, targets []Target) error
	// Subnet is the first three octets of the servers' loopback addresses (default
	// local.DefaultSubnet). Viewers never use 127.0.x.x, so no viewer shares an address
	// with a server.
	Subnet string
	// ScrapeInterval is how often servers are scraped (default DefaultScrapeInterval).
	ScrapeInterval time.Duration
	// ResultsSample is the share of requests written to results.bin: 0 means
	// DefaultResultsSample, a negative value writes none.
	ResultsSample float64
	// NginxBinary runs nginx mirrors (default /usr/sbin/nginx).
	NginxBinary string
	// Reporters render the run once its summary is written (report.html plugs in here).
	Reporters []Reporter
	// Env is where the relay runs: EnvLocal (default) or EnvContainers (Docker, an
	// image built from Binary once per run).
	Env string

	image *containers.Image // EnvContainers: built by Run
}

// Target is one process to scrape, for Prometheus.
type Target struct {
	Job    string // origin, mirror, counter, viewers
	Addr   string // host:port serving /metrics
	Labels map[string]string
}

// Reporter renders a run's files into something people read (the HTML report). It is
// called after summary.json is written, also for an interrupted run.
type Reporter interface {
	Report(dir string, r *RunResult) error
}

// RunResult is what Run measured.
type RunResult struct {
	// Summary is what summary.json holds.
	Summary *report.Summary
	// Dir is the run's output directory.
	Dir string
	// Tunings are the server-side details of each tuning run, in order.
	Tunings []*TuningRun
	// Expectations are the tunings' `expect` checks (the lessons), evaluated on the run.
	Expectations []Check
}

// Tuning returns the details of the tuning called name.
func (r *RunResult) Tuning(name string) *TuningRun {
	for _, t := range r.Tunings {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// TuningRun is the server side of one tuning's run.
type TuningRun struct {
	Name string
	// Dir holds the tuning's files (series.json, servers.json, results.bin, events.log, logs/).
	Dir string
	// Servers are the per-second series and totals of every server (servers.json).
	Servers *report.ServerSeries
	// Series is the viewers' per-second series (series.json).
	Series *report.Series
	// Events is what happened to the processes (starts, crashes, faults).
	Events []local.Event
	// Incomplete is true when the tuning was interrupted.
	Incomplete bool
}

// ErrInterrupted is returned (wrapped) by Run when its context ended before the last
// tuning finished; the summary is still written, marked incomplete.
var ErrInterrupted = errors.New("run interrupted")

// Run runs every tuning of s one after another, each on a fresh topology, and writes
// the run's files into cfg.Dir. The returned result is non-nil whenever anything ran:
// when ctx ends early (Ctrl-C) the summary covers what was measured and is marked
// incomplete, and the error wraps ErrInterrupted. Every process it starts is stopped
// before it returns, also when it panics.
func Run(ctx context.Context, s *Scenario, cfg RunConfig) (*RunResult, error) {
	if cfg.Binary == "" {
		return nil, errors.New("scenarios: RunConfig.Binary is required (the stampede executable)")
	}
	if cfg.Dir == "" {
		return nil, errors.New("scenarios: RunConfig.Dir is required")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if cfg.Run == "" {
		cfg.Run = filepath.Base(cfg.Dir)
	}
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = DefaultScrapeInterval
	}
	if cfg.ResultsSample == 0 {
		cfg.ResultsSample = DefaultResultsSample
	}
	// Check every tuning can be built before anything starts.
	for i := range s.Tunings {
		if _, err := topologyConfig(s.Tunings[i].Settings, time.Now()); err != nil {
			return nil, &FieldError{File: s.File, Path: fmt.Sprintf("tunings[%d].%s", i, flagPath(err, "mirror")), Msg: flagMsg(err)}
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.Env == EnvContainers {
		cfg.progressf("building the relay image from %s\n", cfg.Binary)
		img, err := containers.BuildImage(ctx, containers.ImageConfig{Binary: cfg.Binary})
		if err != nil {
			return nil, err
		}
		defer img.Remove(context.Background())
		cfg.image = img
	}
	res := &RunResult{Dir: cfg.Dir, Summary: &report.Summary{
		Schema: report.SchemaVersion, Run: cfg.Run, Scenario: s.Name, Started: time.Now().UTC(),
	}}
	var runErr error
	for i := range s.Tunings {
		tun := &s.Tunings[i]
		if ctx.Err() != nil {
			res.Summary.Incomplete = true
			break
		}
		cfg.progressf("%s: tuning %s (%d of %d): %d viewers for %s\n", s.Name, tun.Name, i+1, len(s.Tunings), tun.Viewers.Count, s.Duration)
		fig, tr, err := runTuning(ctx, s, tun, cfg)
		if tr != nil {
			res.Tunings = append(res.Tunings, tr)
			if tr.Incomplete {
				res.Summary.Incomplete = true
			}
		}
		if fig != nil {
			res.Summary.Tunings = append(res.Summary.Tunings, *fig)
		}
		if err != nil {
			runErr = fmt.Errorf("tuning %s: %w", tun.Name, err)
			res.Summary.Incomplete = true
			break
		}
		if tr != nil && tr.Incomplete {
			break
		}
	}
	finish(s, res)
	if err := report.Write(cfg.Dir, res.Summary); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing %s: %w", filepath.Join(cfg.Dir, report.SummaryFile), err)
	}
	for _, r := range cfg.Reporters {
		if err := r.Report(cfg.Dir, res); err != nil && runErr == nil {
			runErr = fmt.Errorf("report: %w", err)
		}
	}
	if runErr == nil && res.Summary.Incomplete {
		runErr = fmt.Errorf("%w: the summary covers what was measured and is marked incomplete", ErrInterrupted)
	}
	return res, runErr
}

// finish evaluates gates (they may compare tunings, so only once all ran) and the
// lessons' expectations, and decides the run's pass.
func finish(s *Scenario, res *RunResult) {
	sum := res.Summary
	sum.Pass = len(sum.Tunings) > 0 && !sum.Incomplete
	for i := range sum.Tunings {
		t := &sum.Tunings[i]
		tun, ok := s.Tuning(t.Name)
		if !ok {
			continue
		}
		gates, pass := Evaluate(s.GateThresholds(tun), t, sum.Tunings)
		t.Gates = gates
		tr := res.Tuning(t.Name)
		t.Pass = pass && tr != nil && !tr.Incomplete
		sum.Pass = sum.Pass && t.Pass
	}
	res.Expectations = Expectations(s, sum)
	for _, c := range res.Expectations {
		for i := range sum.Tunings {
			if sum.Tunings[i].Name != c.Tuning {
				continue
			}
			verdict := "held"
			if !c.Pass {
				verdict = "did not hold"
			}
			note := fmt.Sprintf("lesson: expected %s: %s (value %s", c.Rule, verdict, formatValue(c.Name, c.Value))
			if c.Detail != "" {
				note += "; " + c.Detail
			}
			sum.Tunings[i].Notes = append(sum.Tunings[i].Notes, note+")")
		}
	}
}

func (cfg *RunConfig) progressf(format string, a ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format, a...)
	}
}

// testHookStarted, when set (by tests), runs once a tuning's topology is up: a test
// panics there to prove the processes are stopped anyway.
var testHookStarted func()

// runTuning runs one tuning on its own topology. fig and tr are non-nil whenever the
// viewers ran, also when interrupted.
func runTuning(ctx context.Context, s *Scenario, tun *Tuning, cfg RunConfig) (fig *report.Tuning, tr *TuningRun, err error) {
	dir := filepath.Join(cfg.Dir, tun.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	tr = &TuningRun{Name: tun.Name, Dir: dir}
	events, err := newEventLog(filepath.Join(dir, EventsFile))
	if err != nil {
		return nil, nil, err
	}
	defer events.close()
	labels := map[string]string{"run": cfg.Run, "tuning": tun.Name}

	// A playlist full from the first second: the origin's stream began one window ago.
	epoch := time.Now().Add(-time.Duration(tun.Stream.Window) * tun.Stream.SegmentDuration.D())
	tc, err := topologyConfig(tun.Settings, epoch)
	if err != nil {
		return nil, nil, err
	}
	tc.Binary, tc.LogDir, tc.Subnet, tc.Labels = cfg.Binary, filepath.Join(dir, LogsDir), cfg.Subnet, labels
	tc.NginxBinary = cfg.NginxBinary
	tc.OnEvent = events.add
	startedAt := time.Now()
	topo, err := startRelay(ctx, cfg, tc)
	if err != nil {
		if ctx.Err() != nil {
			tr.Incomplete = true
			return nil, tr, nil
		}
		return nil, tr, fmt.Errorf("starting the topology: %w", err)
	}
	defer func() {
		if cerr := topo.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("stopping the topology: %w", cerr)
		}
		tr.Events = topo.Events()
	}()
	cfg.progressf("  topology up in %.1fs: %s\n", time.Since(startedAt).Seconds(), topo.Describe())
	var announced []Target
	onTarget := cfg.OnTarget
	if onTarget != nil {
		onTarget = func(t Target) {
			announced = append(announced, t)
			cfg.OnTarget(t)
		}
		announceTargets(onTarget, topo, labels)
	}
	if testHookStarted != nil {
		testHookStarted()
	}

	sc, err := swarmConfig(tun.Settings, s.Duration.D())
	if err != nil {
		return nil, tr, err
	}
	urls := topo.ViewerURLs()
	sc.Targets = loadgen.Targets{Master: urls[0] + MasterPath, Mirrors: urls}
	if tun.Viewers.Heartbeat > 0 {
		sc.Targets.Counter = topo.CounterURL()
	} else {
		sc.Player.HeartbeatInterval = 0
	}
	sc.Labels, sc.Name = labels, cfg.Run+"/"+tun.Name
	if cfg.Terminal {
		sc.Progress = cfg.Progress
	}
	if cfg.ResultsSample > 0 {
		f, err := os.Create(filepath.Join(dir, ResultsFile))
		if err != nil {
			return nil, tr, err
		}
		defer f.Close()
		sc.Results, sc.SampleRate = f, min(cfg.ResultsSample, 1)
	}
	swarm, err := loadgen.NewSwarm(sc)
	if err != nil {
		return nil, tr, fmt.Errorf("viewers: %w", err)
	}
	if onTarget != nil {
		stop, err := serveViewerMetrics(swarm, onTarget, labels)
		if err != nil {
			return nil, tr, err
		}
		defer stop()
	}
	if cfg.BeforeViewers != nil {
		if err := cfg.BeforeViewers(ctx, announced); err != nil {
			if ctx.Err() != nil {
				tr.Incomplete = true
				return nil, tr, nil
			}
			events.note("prometheus", "before the viewers: "+err.Error())
		}
	}

	sampler := topo
	first := sampler.Sample(ctx)
	rec := newServerRecorder(tun.Name, first, topo)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancelRun() // runs before bg.Wait: stop the sampler and the faults
	start := time.Now()
	bg.Add(2)
	go func() {
		defer bg.Done()
		sampleEvery(runCtx, sampler, cfg.ScrapeInterval, rec)
	}()
	go func() {
		defer bg.Done()
		err := topo.RunFaults(runCtx, start, s.LocalFaults(), nil)
		if err != nil && runCtx.Err() == nil {
			events.note("faults", "fault plan failed: "+err.Error())
		}
	}()
	if !cfg.Terminal && cfg.Progress != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			progressEvery(runCtx, cfg.Progress, swarm, rec, tun.Viewers.Count, start, s.Duration.D())
		}()
	}

	res, runErr := swarm.Run(ctx)
	cancelRun()
	bg.Wait()
	// The last sample after the viewers stopped: its totals are the run's.
	finalCtx, cancelFinal := context.WithTimeout(context.Background(), 2*local.DefaultScrapeTimeout)
	rec.add(sampler.Sample(finalCtx))
	cancelFinal()
	if res == nil {
		return nil, tr, fmt.Errorf("viewers: %w", runErr)
	}
	tr.Incomplete = res.Incomplete
	t := res.Tuning(tun.Name)
	tr.Series = &res.Series
	tr.Series.Tuning = tun.Name
	tr.Servers = rec.series()
	serverFigures(&t, tr.Servers)
	t.Notes = append(t.Notes, eventNotes(topo.Events(), start)...)
	if runErr != nil {
		t.Notes = append(t.Notes, "viewers: "+runErr.Error())
	}
	if err := report.WriteSeries(dir, tr.Series); err != nil {
		return &t, tr, err
	}
	if err := report.WriteServers(dir, tr.Servers); err != nil {
		return &t, tr, err
	}
	cfg.progressf("  %s: %s\n", tun.Name, oneLine(&t))
	return &t, tr, nil
}

func mirrorList(t *local.Topology) string {
	var parts []string
	for _, m := range t.Mirrors() {
		parts = append(parts, m.Name+" "+m.Kind+" "+m.Process.Addr())
	}
	if u := t.ViewerOriginURL(); u != "" {
		parts = append(parts, "origin exposed at "+strings.TrimPrefix(u, "http://"))
	}
	return strings.Join(parts, ", ")
}

// announceTargets tells OnTarget about every server that serves /metrics (nginx does
// not; the runner scrapes its stub_status itself).
func announceTargets(on func(Target), topo relay, labels map[string]string) {
	with := func(instance string) map[string]string {
		l := map[string]string{"instance_name": instance}
		for k, v := range labels {
			l[k] = v
		}
		return l
	}
	for _, name := range topo.Names() {
		job := name
		if strings.HasPrefix(name, local.RoleMirror) {
			job = local.RoleMirror
			if lr, ok := topo.(*localRelay); ok && !isStampedeMirror(lr, name) {
				continue // nginx serves no /metrics
			}
		}
		on(Target{Job: job, Addr: topo.Server(name).Addr(), Labels: with(name)})
	}
}

// serveViewerMetrics serves the swarm's /metrics on a free loopback port for Prometheus.
func serveViewerMetrics(swarm *loadgen.Swarm, on func(Target), labels map[string]string) (func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("viewers' /metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		serverkit.Serve(ctx, &http.Server{Handler: swarm.Handler(), ReadHeaderTimeout: 10 * time.Second}, ln, time.Second)
	}()
	l := map[string]string{"instance_name": "viewers"}
	for k, v := range labels {
		l[k] = v
	}
	on(Target{Job: "viewers", Addr: ln.Addr().String(), Labels: l})
	return func() { cancel(); <-done }, nil
}

func sampleEvery(ctx context.Context, s interface {
	Sample(context.Context) local.Sample
}, every time.Duration, rec *serverRecorder) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			smp := s.Sample(ctx)
			if ctx.Err() != nil {
				return // cut short: the final sample follows
			}
			rec.add(smp)
		}
	}
}

// progressEvery prints a status line every 10 s for logs and CI, where the viewers'
// live terminal line would be noise.
func progressEvery(ctx context.Context, w io.Writer, swarm *loadgen.Swarm, rec *serverRecorder, target int, start time.Time, run time.Duration) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r := swarm.Recorder()
			fmt.Fprintf(w, "  [%3.0fs/%s] viewers %d/%d  segments %d  playlists %d  %s\n",
				time.Since(start).Seconds(), run, r.Active(), target,
				r.Requests(loadgen.KindSegment), r.Requests(loadgen.KindPlaylist), rec.status())
		}
	}
}

// oneLine is a tuning's result in one line, for progress output.
func oneLine(t *report.Tuning) string {
	return fmt.Sprintf("%d viewers (peak %d), segment p99 %.0fms, stalls %d, errors %d, origin requests %d, counter crashes %d, generator bound %v",
		t.Viewers.Target, t.Viewers.Peak, t.LatencyMs.Segment.P99, t.Stalls.Count, t.Errors.Total, t.Origin.Requests, t.Counter.Crashes, t.Generator.Bound)
}

// eventLog writes the supervisor's events to events.log as they happen (a test or a
// person can follow a run, and find every pid it started).
type eventLog struct {
	mu sync.Mutex // protects f
	f  *os.File
}

func newEventLog(path string) (*eventLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &eventLog{f: f}, nil
}

func (l *eventLog) add(e local.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		fmt.Fprintln(l.f, e.String())
	}
}

func (l *eventLog) note(process, detail string) {
	l.add(local.Event{Time: time.Now(), Process: process, Kind: local.EventNote, Detail: detail})
}

func (l *eventLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// maxCrashNotes bounds the notes of a crash loop; the count is always given.
const maxCrashNotes = 3

// eventNotes turns what happened to the processes into summary notes: crashes (with the
// fatal message), faults applied, limits lowered.
func eventNotes(events []local.Event, start time.Time) []string {
	var out []string
	crashes := map[string]int{}
	var order []string
	for _, e := range events {
		at := e.Time.Sub(start).Seconds()
		switch e.Kind {
		case local.EventCrashed:
			if crashes[e.Process] == 0 {
				order = append(order, e.Process)
			}
			crashes[e.Process]++
			if crashes[e.Process] <= maxCrashNotes {
				out = append(out, fmt.Sprintf("%s crashed at %.1fs: %s", e.Process, at, e.Detail))
			}
		case local.EventFault:
			out = append(out, fmt.Sprintf("fault at %.1fs: %s", at, e.Detail))
		case local.EventNote:
			out = append(out, fmt.Sprintf("%s: %s", e.Process, e.Detail))
		}
	}
	for _, p := range order {
		if n := crashes[p]; n > maxCrashNotes {
			out = append(out, fmt.Sprintf("%s crashed %d times in all", p, n))
		}
	}
	return out
}

func isStampedeMirror(r *localRelay, name string) bool {
	for _, m := range r.Mirrors() {
		if m.Name == name {
			return m.Kind == local.MirrorStampede
		}
	}
	return false
}
