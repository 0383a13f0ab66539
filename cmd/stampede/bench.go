package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/scenarios"
	"github.com/stampede-live/stampede/testenv/local"
	"github.com/stampede-live/stampede/testenv/prometheus"
)

func init() {
	register(command{name: "bench", summary: "run a scenario's tunings on a local relay, compare them and gate (exit 0 pass, 1 fail, 2 bad input)", run: runBench})
}

const benchUsage = `[--scenario FILE|NAME] [--viewers N] [--duration D] [--tuning NAME ...] [--out DIR] [--prometheus [--keep]]

Starts the relay of a scenario on this machine (origin, mirrors, counter: child
processes on loopback), runs its viewers through it once per tuning, prints a table
comparing the tunings, and writes DIR/summary.json, per tuning DIR/<tuning>/series.json
(viewers, per second), servers.json (every server, per second), results.bin (requests,
vegeta's encoding), events.log and logs/. Ctrl-C stops the run and still writes what
was measured, marked incomplete (exit 130).
Exit 0 every tuning passed its thresholds, 1 one did not (or the load generator was
bound), 2 bad input.`

// reporters render a finished run (report.html): a report package adds itself here
// from its own init, so bench needs no change to gain one.
var reporters []scenarios.Reporter

// benchEnvs are the environments a topology can run in.
var benchEnvs = []string{scenarios.EnvLocal, scenarios.EnvContainers}

func runBench(ctx context.Context, args []string) error {
	return benchMain(ctx, args, os.Stdout, os.Stderr)
}

func benchMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", benchUsage, stderr)
	scenario := fs.String("scenario", scenarios.DefaultScenario, "scenario file, or the name of a shipped one (stampede scenario list)")
	viewers := fs.Int("viewers", 0, "viewers per tuning (0: the scenario's viewers.count)")
	duration := fs.Duration("duration", 0, "run length per tuning (0: the scenario's duration)")
	var tunings stringsFlag
	fs.Var(&tunings, "tuning", "run only this tuning (repeatable; default all)")
	out := fs.String("out", "", "directory for the run's files (default results/RUN)")
	runName := fs.String("run", "", "run name, the run label on every metric (default SCENARIO-YYYYMMDD-HHMMSS)")
	env := fs.String("env", benchEnvs[0], "where the relay runs: "+strings.Join(benchEnvs, ", "))
	prom := fs.Bool("prometheus", false, "start Prometheus scraping every process (run/tuning labels); its data stays in DIR/prometheus")
	keep := fs.Bool("keep", false, "with --prometheus: keep Prometheus up after the run, until Ctrl-C")
	sample := fs.Float64("results-sample", scenarios.DefaultResultsSample, "share of requests written to results.bin (0: none)")
	subnet := fs.String("subnet", local.DefaultSubnet, "first three octets of the servers' loopback addresses")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case !contains(benchEnvs, *env):
		return usageError("--env %q: want one of %s", *env, strings.Join(benchEnvs, ", "))
	case *viewers < 0:
		return usageError("--viewers: must be >= 0, got %d", *viewers)
	case *duration < 0:
		return usageError("--duration: must be >= 0, got %v", *duration)
	case *keep && !*prom:
		return usageError("--keep: only with --prometheus")
	case *sample < 0 || *sample > 1:
		return usageError("--results-sample: want 0 to 1, got %v", *sample)
	case !strings.HasPrefix(*subnet+".", "127.0.") || strings.Count(*subnet, ".") != 2:
		// Viewers dial from 127.x.y.z outside 127.0.x.x: servers there never share an
		// address with a viewer.
		return usageError("--subnet %q: want 127.0.N (viewers use the rest of 127.0.0.0/8)", *subnet)
	}
	s, notes, err := loadForRun(*scenario, tunings, *viewers, *duration)
	if err != nil {
		return err
	}
	if *runName == "" {
		*runName = s.Name + "-" + time.Now().Format("20060102-150405")
	}
	if *out == "" {
		*out = filepath.Join("results", *runName)
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the stampede executable to run the servers: %w", err)
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}

	cfg := scenarios.RunConfig{
		Binary: bin, Dir: *out, Run: *runName, Progress: stderr, Terminal: isTerminalWriter(stderr),
		Subnet: *subnet, ResultsSample: *sample, Reporters: reporters, Env: *env,
	}
	if *sample == 0 {
		cfg.ResultsSample = -1
	}
	var promSrv *prometheus.Server
	if *prom {
		promSrv, err = prometheus.Start(ctx, prometheus.Config{Dir: filepath.Join(*out, "prometheus")})
		if err != nil {
			return fmt.Errorf("--prometheus: %w", err)
		}
		defer promSrv.Stop()
		fmt.Fprintf(stderr, "prometheus: %s (data in %s)\n", promSrv.URL(), filepath.Join(*out, "prometheus"))
		cfg.OnTarget = func(t scenarios.Target) {
			if err := promSrv.AddTargets(prometheus.Target{Job: t.Job, Addr: t.Addr, Labels: t.Labels}); err != nil {
				fmt.Fprintf(stderr, "prometheus: adding %s: %v\n", t.Addr, err)
			}
		}
		cfg.BeforeViewers = waitScraped(promSrv, benchScrapeWait)
	}
	fmt.Fprintf(stderr, "bench %s: run %s, %d tuning(s), %s each; results in %s\n", s.Name, *runName, len(s.Tunings), s.Duration, *out)

	res, runErr := scenarios.Run(ctx, s, cfg)
	if res != nil {
		printBenchTable(stdout, res)
		fmt.Fprintf(stdout, "\nsummary: %s\n", filepath.Join(*out, report.SummaryFile))
	}
	if promSrv != nil && *keep {
		fmt.Fprintf(stderr, "prometheus: keeping %s up with the run's data; Ctrl-C to stop\n", promSrv.URL())
		waitForInterrupt(promSrv.Done())
	}
	switch {
	case errors.Is(runErr, scenarios.ErrInterrupted):
		return exitError{code: 130, err: errors.New("interrupted: the partial summary was written, marked incomplete")}
	case runErr != nil:
		return runErr
	case !res.Summary.Pass:
		return exitError{code: 1, err: errors.New("a tuning failed its thresholds (see the table)")}
	}
	return nil
}

// loadForRun loads a scenario and applies the command line's overrides; every
// problem is a usage error (exit 2).
func loadForRun(name string, tunings []string, viewers int, duration time.Duration) (*scenarios.Scenario, []string, error) {
	s, err := scenarios.Load(name)
	if err != nil {
		return nil, nil, usageError("--scenario: %v", err)
	}
	if err := s.Select(tunings...); err != nil {
		return nil, nil, usageError("--tuning: %v", err)
	}
	if viewers > 0 {
		s.SetViewers(viewers)
	}
	var notes []string
	if duration > 0 {
		notes = s.SetDuration(duration)
	}
	if err := s.Validate(); err != nil {
		return nil, nil, usageError("%v", err)
	}
	return s, notes, nil
}

// waitForInterrupt blocks until Ctrl-C (or SIGTERM), or until done closes.
func waitForInterrupt(done <-chan struct{}) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case <-done:
	}
}

// printBenchTable prints one column per tuning, then the lessons' checks.
func printBenchTable(w io.Writer, res *scenarios.RunResult) {
	sum := res.Summary
	if len(sum.Tunings) == 0 {
		fmt.Fprintln(w, "no tuning finished")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(label string, cell func(t *report.Tuning) string) {
		cells := []string{label}
		for i := range sum.Tunings {
			cells = append(cells, cell(&sum.Tunings[i]))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	row("", func(t *report.Tuning) string { return t.Name })
	row("pass", func(t *report.Tuning) string {
		switch {
		case t.Generator.Bound:
			return "INVALID"
		case t.Pass:
			return "yes"
		}
		return "NO"
	})
	row("viewers (peak)", func(t *report.Tuning) string { return fmt.Sprintf("%d (%d)", t.Viewers.Target, t.Viewers.Peak) })
	row("segment p99", func(t *report.Tuning) string { return fmt.Sprintf("%.0fms", t.LatencyMs.Segment.P99) })
	row("startup p90", func(t *report.Tuning) string { return fmt.Sprintf("%.0fms", t.LatencyMs.Startup.P90) })
	row("stalls", func(t *report.Tuning) string { return fmt.Sprintf("%d", t.Stalls.Count) })
	row("errors", func(t *report.Tuning) string {
		if t.Errors.Total == 0 {
			return "0"
		}
		return fmt.Sprintf("%d (%s)", t.Errors.Total, topClasses(t.Errors.ByClass))
	})
	row("hit ratio (worst)", func(t *report.Tuning) string {
		if len(t.Mirrors) == 0 {
			return "-"
		}
		worst := 1.0
		for _, m := range t.Mirrors {
			worst = min(worst, m.HitRatio)
		}
		return fmt.Sprintf("%.1f%%", worst*100)
	})
	row("origin requests", func(t *report.Tuning) string { return fmt.Sprintf("%d", t.Origin.Requests) })
	row("mirror emfile/shed", func(t *report.Tuning) string {
		var e, s int64
		for _, m := range t.Mirrors {
			e += m.EMFILE
			s += m.Shed
		}
		return fmt.Sprintf("%d/%d", e, s)
	})
	row("counter crashes", func(t *report.Tuning) string { return fmt.Sprintf("%d", t.Counter.Crashes) })
	row("generator bound", func(t *report.Tuning) string {
		return fmt.Sprintf("%v (lag p99 %.0fms)", t.Generator.Bound, t.Generator.LagP99Ms)
	})
	tw.Flush()
	for _, t := range sum.Tunings {
		for _, g := range t.Gates {
			if !g.Pass {
				fmt.Fprintf(w, "FAIL %s: %s (value %g)\n", t.Name, g.Threshold, g.Value)
			}
		}
	}
	if len(res.Expectations) > 0 {
		fmt.Fprintln(w, "\nlessons (each tuning's expected outcome):")
		for _, c := range res.Expectations {
			mark := "held"
			if !c.Pass {
				mark = "DID NOT HOLD"
			}
			fmt.Fprintf(w, "  %-12s %-50s %s\n", c.Tuning, c.Rule, mark)
		}
	}
	if sum.Incomplete {
		fmt.Fprintln(w, "\nINCOMPLETE: the run was interrupted; figures cover what ran")
	}
}

// topClasses names the error classes seen, most frequent first, at most three.
func topClasses(m map[string]int64) string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range m {
		if v > 0 {
			l = append(l, kv{k, v})
		}
	}
	for i := range l {
		for j := i + 1; j < len(l); j++ {
			if l[j].v > l[i].v || l[j].v == l[i].v && l[j].k < l[i].k {
				l[i], l[j] = l[j], l[i]
			}
		}
	}
	var parts []string
	for i, e := range l {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	return strings.Join(parts, ", ")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// isTerminalWriter reports whether w is a terminal.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// benchScrapeWait bounds how long a tuning waits for Prometheus's first scrape of its
// processes before the viewers arrive anyway (the wait is noted in the summary).
const benchScrapeWait = 30 * time.Second

// waitScraped returns a BeforeViewers hook that waits, at most limit, until Prometheus
// has scraped every process of the tuning once.
func waitScraped(p *prometheus.Server, limit time.Duration) func(context.Context, []scenarios.Target) error {
	return func(ctx context.Context, targets []scenarios.Target) error {
		addrs := make([]string, len(targets))
		for i, t := range targets {
			addrs[i] = t.Addr
		}
		wctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		err := p.WaitScraped(wctx, addrs)
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
}
