package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stampede-live/stampede/internal/serverkit"
	"github.com/stampede-live/stampede/loadgen"
	"github.com/stampede-live/stampede/loadgen/report"
)

func init() {
	register(command{name: "viewers", summary: "run simulated HLS viewers against a stream and write summary.json", run: runViewers})
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runViewers(ctx context.Context, args []string) error {
	fs := newFlagSet("viewers", "--url URL [--mirror URL ...] [--counter URL] [--viewers N] [--ramp D] [--duration D] [--out DIR]", nil)
	url := fs.String("url", "", "multivariant (or media) playlist URL; its path is used on every --mirror")
	var mirrors stringList
	fs.Var(&mirrors, "mirror", "mirror base URL (repeatable); viewers pick the lowest round trip and fail over")
	counter := fs.String("counter", "", "viewer counter base URL; viewers call "+loadgen.DefaultHeartbeatPath+" every 5 s")
	viewers := fs.Int("viewers", loadgen.DefaultViewers, "viewers to start (ramp, flash); a cap for poisson (0: none)")
	ramp := fs.Duration("ramp", loadgen.DefaultRamp, "ramp: start the viewers evenly over this")
	duration := fs.Duration("duration", loadgen.DefaultRunDuration, "run length, ramp included")
	arrival := fs.String("arrival", loadgen.ArrivalRamp, "arrival schedule: ramp, flash or poisson")
	flash := fs.Duration("flash", loadgen.DefaultFlashWindow, "flash: all viewers arrive at random within this")
	rate := fs.Float64("rate", 0, "poisson: arrivals per second")
	session := fs.Duration("session", 0, "session length (churn); 0: stay until the run ends")
	sessionDist := fs.String("session-dist", loadgen.SessionFixed, "session length distribution when --session is set: fixed, exponential (mean --session), uniform (--session-min..--session-max)")
	sessionMin := fs.Duration("session-min", 0, "shortest session (exponential floor, uniform lower bound)")
	sessionMax := fs.Duration("session-max", 0, "longest session (uniform)")
	arriveAt := fs.Duration("arrive-at", 0, "start the arrival schedule this long after the run starts")
	mirrorChoice := fs.String("mirror-choice", loadgen.DefaultMirrorChoice, "how a viewer picks its mirror: lowest-rtt (ping each at join) or random")
	heartbeat := fs.Duration("heartbeat", loadgen.DefaultHeartbeatInterval, "counter heartbeat interval; 0 sends none")
	seed := fs.Uint64("seed", 0, "seed for flash, poisson and session draws (0: a fixed default)")
	out := fs.String("out", "", "directory for summary.json and series.json (default results/RUN)")
	runName := fs.String("run", "", "run name (default viewers-YYYYMMDD-HHMMSS)")
	tuning := fs.String("tuning", "default", "tuning name in summary.json")
	results := fs.String("results", "", "write every request in vegeta's encoding to FILE (vegeta report < FILE)")
	sample := fs.Float64("results-sample", 1, "fraction of requests written to --results (systematic sample)")
	listen := fs.String("listen", "", "serve /metrics (stampede_viewers_) on this address while running")
	var labels serverkit.Labels
	fs.Var(&labels, "label", "constant label on every metric, name=value (repeatable)")
	sourceIPs := fs.String("source-ips", loadgen.SourceIPsAuto, "give each viewer its own 127.x.y.z: auto (when every target is on loopback), on, off")
	sourceNet := fs.String("source-net", loadgen.DefaultSourceNet, "where viewers' loopback addresses come from")
	client := fs.String("client", loadgen.DefaultClient, "HTTP client: stampede (own HTTP/1.1, light) or net/http (httptrace, HTTP/2)")
	failover := fs.Int("failover-after", loadgen.DefaultFailoverAfter, "consecutive failures of one load on a mirror before moving to the next (-1: never)")
	pingTimeout := fs.Duration("ping-timeout", loadgen.DefaultPingTimeout, "bound on each mirror's round-trip probe at join")
	lagLimit := fs.Duration("lag-limit", loadgen.DefaultLagLimit, "timer lag p99 beyond which the run is generator-bound (invalid)")
	insecure := fs.Bool("insecure", false, "accept any TLS certificate (https targets)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *url == "" && len(mirrors) == 0:
		return usageError("--url: give the playlist URL (and --mirror for several mirrors)")
	case *duration <= 0:
		return usageError("--duration: must be > 0, got %v", *duration)
	case *viewers < 0:
		return usageError("--viewers: must be >= 0, got %d", *viewers)
	case *ramp < 0:
		return usageError("--ramp: must be >= 0, got %v", *ramp)
	case *pingTimeout <= 0:
		return usageError("--ping-timeout: must be > 0, got %v", *pingTimeout)
	case *heartbeat < 0:
		return usageError("--heartbeat: must be >= 0, got %v", *heartbeat)
	case *sample <= 0 || *sample > 1:
		return usageError("--results-sample: must be in (0, 1], got %v", *sample)
	}
	arr := loadgen.Arrivals{Kind: *arrival, Count: *viewers, Rate: *rate, Seed: *seed, At: *arriveAt}
	switch *arrival {
	case loadgen.ArrivalRamp:
		arr.Over = *ramp
	case loadgen.ArrivalFlash:
		arr.Over = *flash
	}
	if *session > 0 || *sessionMax > 0 {
		arr.Session = loadgen.SessionLength{Dist: *sessionDist, Mean: *session, Min: *sessionMin, Max: *sessionMax}
	}
	if *runName == "" {
		*runName = "viewers-" + time.Now().Format("20060102-150405")
	}
	if *out == "" {
		*out = filepath.Join("results", *runName)
	}
	if labels == nil {
		labels = serverkit.Labels{}
	}
	if _, ok := labels["run"]; !ok {
		labels["run"] = *runName
	}
	if _, ok := labels["tuning"]; !ok {
		labels["tuning"] = *tuning
	}
	cfg := loadgen.SwarmConfig{
		Targets: loadgen.Targets{Master: *url, Mirrors: mirrors, Counter: *counter},
		Player: loadgen.PlayerConfig{Client: *client, FailoverAfter: *failover,
			MirrorChoice: *mirrorChoice, HeartbeatInterval: *heartbeat, PingTimeout: *pingTimeout},
		Arrivals: arr,
		Duration: *duration, SourceIPs: *sourceIPs, SourceNet: *sourceNet,
		Labels: labels, LagLimit: *lagLimit, Name: *runName,
	}
	if *heartbeat == 0 {
		cfg.Targets.Counter = ""
		cfg.Player.HeartbeatInterval = 0
	}
	if *insecure {
		cfg.Player.TLS = insecureTLS()
	}
	if isTerminal(os.Stderr) {
		cfg.Progress = os.Stderr
	}
	var resultsFile *os.File
	if *results != "" {
		f, err := os.Create(*results)
		if err != nil {
			return usageError("--results: %v", err)
		}
		resultsFile = f
		defer f.Close()
		cfg.Results, cfg.SampleRate = f, *sample
	}
	swarm, err := loadgen.NewSwarm(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", *listen, err)
		}
		fmt.Fprintf(os.Stderr, "metrics on http://%s/metrics\n", ln.Addr())
		sctx, stop := context.WithCancel(context.Background())
		defer stop()
		go serverkit.Serve(sctx, &http.Server{Handler: swarm.Handler(), ReadHeaderTimeout: 10 * time.Second}, ln, time.Second)
	}

	res, err := swarm.Run(ctx)
	if res == nil {
		return err
	}
	sum := res.Summary(*runName, "viewers", *tuning)
	if werr := report.Write(*out, sum); werr != nil {
		return fmt.Errorf("writing %s: %w", *out, werr)
	}
	series := res.Series
	series.Tuning = *tuning
	if werr := report.WriteSeries(*out, &series); werr != nil {
		return fmt.Errorf("writing %s: %w", *out, werr)
	}
	// The report is a picture of what was written; a failure to draw it loses nothing.
	if problems, werr := report.WriteHTML(*out); werr != nil {
		fmt.Fprintf(os.Stderr, "report.html: %v\n", werr)
	} else {
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "report.html: %s\n", p)
		}
	}
	if resultsFile != nil {
		if cerr := resultsFile.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("--results: %w", cerr)
		}
	}
	printViewersSummary(os.Stdout, sum, res, filepath.Join(*out, report.SummaryFile))
	switch {
	case err != nil:
		return err
	case res.Incomplete:
		return exitError{code: 130, err: errors.New("interrupted: the partial summary was written")}
	case sum.Tunings[0].Generator.Bound:
		return exitError{code: 1, err: errors.New("the load generator was bound (see the notes above): this run is invalid")}
	}
	return nil
}

// printViewersSummary prints the figures a person reads first.
func printViewersSummary(w io.Writer, s *report.Summary, res *loadgen.Result, path string) {
	t := s.Tunings[0]
	fmt.Fprintf(w, "viewers    target %d  peak %d  sessions %d  failed %d  (%.0fs)\n", t.Viewers.Target, t.Viewers.Peak, t.Viewers.Sessions, t.Viewers.Failed, t.DurationS)
	fmt.Fprintf(w, "requests   playlist %d  segment %d  heartbeat %d  ping %d\n", t.Requests.Playlist, t.Requests.Segment, t.Requests.Heartbeat, t.Requests.Ping)
	q := func(x report.Quantiles) string {
		return fmt.Sprintf("p50 %.1f  p90 %.1f  p99 %.1f  max %.1f", x.P50, x.P90, x.P99, x.Max)
	}
	fmt.Fprintf(w, "segment ms %s\n", q(t.LatencyMs.Segment))
	fmt.Fprintf(w, "seg ttfb   %s\n", q(t.LatencyMs.SegmentTTFB))
	fmt.Fprintf(w, "playlist   %s\n", q(t.LatencyMs.Playlist))
	fmt.Fprintf(w, "startup ms %s\n", q(t.LatencyMs.Startup))
	fmt.Fprintf(w, "live lat s %s\n", q(t.LiveLatencyS))
	fmt.Fprintf(w, "stalls     %d  (%.1f s, %.3f per viewer-minute, rebuffer %.4f, %.1f%% of sessions)\n",
		t.Stalls.Count, t.Stalls.Seconds, t.Stalls.PerViewerMinute, t.Stalls.RebufferRatio, 100*t.Stalls.SessionsWithStall)
	fmt.Fprintf(w, "errors     %d (rate %.4f) %v\n", t.Errors.Total, t.Errors.Rate, nonZero(t.Errors.ByClass))
	fmt.Fprintf(w, "counter    max |answer - truth| %d\n", t.Counter.MaxAbsError)
	fmt.Fprintf(w, "generator  cpu %.1fs  max rss %.0f MB  lag p99 %.1f ms  bound %v\n", t.Generator.CPUSeconds, float64(t.Generator.MaxRSSBytes)/1e6, t.Generator.LagP99Ms, t.Generator.Bound)
	for _, n := range t.Notes {
		fmt.Fprintf(w, "note       %s\n", n)
	}
	fmt.Fprintf(w, "summary    %s (pass %v)\n", path, t.Pass)
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// isTerminal reports whether f is a terminal (the progress line is for people only).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
