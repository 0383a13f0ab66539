package dashboards

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
	"github.com/stampede-live/stampede/scenarios"
	"github.com/stampede-live/stampede/testenv/prometheus"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// benchScenario is a bench run small enough for `go test -race` on a busy machine:
// the whole relay (origin, two mirrors, the counter) and 20 viewers for 20 s.
const benchScenario = `name: dashboards
duration: 20s
topology: {mirrors: 2}
stream: {segment_duration: 1s, window: 6}
viewers:
  count: 20
  arrivals: {kind: ramp, over: 4s}
  heartbeat: 1s
mirror: {playlist_ttl: 1s}
counter: {expire: 3s, sweep: 1s}
tunings:
  - name: %s
    counter: {store: %s}
`

// benchRun is one run of the proof: its run and tuning labels, and the loopback /24
// of its servers (apart from other packages' tests).
type benchRun struct{ run, tuning, subnet string }

var proofRuns = []benchRun{
	{run: "dash-a", tuning: "mutex", subnet: "127.0.240"},
	{run: "dash-b", tuning: "sharded", subnet: "127.0.241"},
}

// TestPanelsAgainstRealPrometheus is the dashboards' proof. Debian's Prometheus
// scrapes two real bench runs (the bench runner with the stampede binary's servers
// as child processes, the viewers in this process), each with its own run and
// tuning. Then, for every panel query of every dashboard (the mirror row once per
// mirror instance, as Grafana repeats it), the Grafana variables are substituted as
// Grafana would, Prometheus's parser checks the query (format_query), Prometheus
// runs it as the panel would (instant for bar gauges and tables, a range otherwise)
// and it must return data with a finite value. On the comparison dashboard every
// query must return exactly one series per run and tuning.
func TestPanelsAgainstRealPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	prom, err := prometheus.Start(ctx, prometheus.Config{Dir: filepath.Join(tmp, "prometheus")})
	if errors.Is(err, prometheus.ErrNotInstalled) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Stop() })
	comparePrometheusConfigs(t, filepath.Join(tmp, "prometheus", "prometheus.yml"))

	bin := testbin.Stampede(t)
	start := time.Now().Add(-time.Second).Truncate(time.Second)
	var wg sync.WaitGroup
	results := make([]*scenarios.RunResult, len(proofRuns))
	errs := make([]error, len(proofRuns))
	for i, r := range proofRuns {
		s, err := scenarios.Parse("dashboards.yaml", fmt.Appendf(nil, benchScenario, r.tuning, r.tuning))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = scenarios.Run(ctx, s, scenarios.RunConfig{
				Binary: bin, Dir: filepath.Join(tmp, r.run), Run: r.run, Subnet: r.subnet, ResultsSample: -1,
				OnTarget: func(tg scenarios.Target) {
					if err := prom.AddTargets(prometheus.Target{Job: tg.Job, Addr: tg.Addr, Labels: tg.Labels}); err != nil {
						t.Errorf("adding %s to Prometheus: %v", tg.Addr, err)
					}
				},
				// As bench --prometheus does: viewers arrive once every process has been
				// scraped, so increase() over the run sees the startups from zero.
				BeforeViewers: func(ctx context.Context, targets []scenarios.Target) error {
					addrs := make([]string, len(targets))
					for i, tg := range targets {
						addrs[i] = tg.Addr
					}
					wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
					defer cancel()
					if err := prom.WaitScraped(wctx, addrs); err != nil {
						t.Errorf("bench run %s: %v", r.run, err)
					}
					return nil
				},
			})
		}()
	}
	wg.Wait()
	for i, r := range proofRuns {
		if errs[i] != nil {
			t.Fatalf("bench run %s: %v", r.run, errs[i])
		}
		tun := results[i].Summary.Tunings
		if len(tun) != 1 || tun[0].Viewers.Peak == 0 || tun[0].Requests.Segment == 0 {
			t.Fatalf("bench run %s measured nothing: %+v", r.run, tun)
		}
	}
	waitForScrapes(ctx, t, prom)
	end := time.Now().Truncate(time.Second)

	e := &expander{
		values: map[string][]string{},
		multi:  map[string]bool{},
		rng:    end.Sub(start),
		// Grafana's $__interval for a range this short on a wide panel is the scrape interval.
		interval: prometheus.DefaultScrapeInterval,
		scrape:   prometheus.DefaultScrapeInterval,
	}
	wantPairs := map[string]bool{}
	for _, r := range proofRuns {
		wantPairs[r.run+"/"+r.tuning] = true
	}

	queries := 0
	for _, d := range loadDashboards(t) {
		t.Run(d.file, func(t *testing.T) {
			vars := resolveVariables(ctx, t, prom, d, e, end)
			if got := vars.values["run"]; !slices.Equal(got, []string{"dash-a", "dash-b"}) {
				t.Errorf("$run resolves to %v, want the two runs", got)
			}
			if got := vars.values["tuning"]; !slices.Equal(got, []string{"mutex", "sharded"}) {
				t.Errorf("$tuning resolves to %v, want the two tunings", got)
			}
			if inst, ok := vars.values["instance"]; ok && len(inst) != 4 {
				t.Errorf("$instance resolves to %v, want the 2 mirrors of each run", inst)
			}
			for _, p := range d.allPanels() {
				if p.Type == "row" {
					continue
				}
				// A panel in a repeated row runs once per value of the repeat variable.
				repeats := []map[string][]string{nil}
				if p.row != nil && p.row.Repeat != "" {
					repeats = nil
					for _, v := range vars.values[p.row.Repeat] {
						repeats = append(repeats, map[string][]string{p.row.Repeat: {v}})
					}
					if len(repeats) == 0 {
						t.Errorf("row %q repeats over $%s, which has no values", p.row.Title, p.row.Repeat)
					}
				}
				for _, rep := range repeats {
					pe := vars.with(rep)
					for _, tg := range p.Targets {
						name := p.Title + "/" + tg.RefID
						if rep != nil {
							name += "/" + p.row.Repeat + "=" + rep[p.row.Repeat][0]
						}
						queries++
						series := runTarget(ctx, t, prom, pe, name, tg, start, end)
						if series == nil {
							continue
						}
						if d.file == "tuning-comparison.json" {
							checkOnePerRun(t, name, series, wantPairs)
						}
						if rep != nil && strings.Contains(tg.Expr, "instance") {
							for _, s := range series {
								if s.labels["instance"] != rep[p.row.Repeat][0] {
									t.Errorf("%s: series of instance %q in the row of %q", name, s.labels["instance"], rep[p.row.Repeat][0])
								}
							}
						}
					}
				}
			}
		})
	}
	t.Logf("%d panel queries checked against Prometheus %s over %s of two bench runs", queries, prom.URL(), end.Sub(start))
}

// waitForScrapes polls until Prometheus holds every role of both runs.
func waitForScrapes(ctx context.Context, t *testing.T, prom *prometheus.Server) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := prom.Query(ctx, `group by (run, tuning, job) (last_over_time(up{job=~"origin|mirror|counter|viewers"}[10m]))`, time.Time{})
		if err == nil && len(got) == 4*len(proofRuns) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not scrape every process of both runs: %v %v", got, err)
		}
		time.Sleep(250 * time.Millisecond) // polling an external process; no event to wait on
	}
}

// resolveVariables runs each query variable as Grafana does (label_values over the
// dashboard's range, earlier variables substituted) and selects all its values.
func resolveVariables(ctx context.Context, t *testing.T, prom *prometheus.Server, d *dashboard, base *expander, at time.Time) *expander {
	t.Helper()
	e := base.with(nil)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesCall.FindStringSubmatch(v.queryText())
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(...)", v.Name, v.queryText())
		}
		sel, label := m[1], m[2]
		if sel == "" {
			sel = `{__name__=~".+"}`
		}
		sel, err := e.expand(sel)
		if err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		got, err := prom.Query(ctx, fmt.Sprintf("group by (%s) (last_over_time(%s[%s]))", label, sel, promDur(e.rng)), at)
		if err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		var vals []string
		for _, s := range got {
			if s.Metric[label] != "" {
				vals = append(vals, s.Metric[label])
			}
		}
		sort.Strings(vals)
		e.values[v.Name] = vals
		e.multi[v.Name] = v.Multi || v.IncludeAll
	}
	return e
}

// with returns a copy of e with some variables set to other values.
func (e *expander) with(set map[string][]string) *expander {
	c := *e
	c.values = map[string][]string{}
	c.multi = map[string]bool{}
	for k, v := range e.values {
		c.values[k] = v
	}
	for k, v := range e.multi {
		c.multi[k] = v
	}
	for k, v := range set {
		c.values[k] = v
	}
	return &c
}

// result is one series of a panel query, instant or range.
type result struct {
	labels map[string]string
	values []float64
}

// runTarget checks one query's syntax with Prometheus's parser, runs it as its panel
// does, and requires data with at least one finite value. It returns nil after
// reporting a failure.
func runTarget(ctx context.Context, t *testing.T, prom *prometheus.Server, e *expander, name string, tg target, start, end time.Time) []result {
	t.Helper()
	expr, err := e.expand(tg.Expr)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return nil
	}
	if _, err := prom.FormatQuery(ctx, expr); err != nil {
		t.Errorf("%s: Prometheus does not parse it: %v", name, err)
		return nil
	}
	var out []result
	if tg.Instant {
		got, err := prom.Query(ctx, expr, end)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return nil
		}
		for _, s := range got {
			out = append(out, result{s.Metric, []float64{s.Value}})
		}
	} else {
		got, err := prom.QueryRange(ctx, expr, start, end, e.interval)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return nil
		}
		for _, s := range got {
			r := result{labels: s.Metric}
			for _, p := range s.Points {
				r.values = append(r.values, p[1])
			}
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		t.Errorf("%s: no data for %s", name, expr)
		return nil
	}
	for _, r := range out {
		for _, v := range r.values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				return out
			}
		}
	}
	t.Errorf("%s: only NaN or Inf values for %s", name, expr)
	return nil
}

// checkOnePerRun: a comparison query gives exactly one series per run and tuning,
// each labelled with both, so no run is summed into another.
func checkOnePerRun(t *testing.T, name string, series []result, want map[string]bool) {
	t.Helper()
	got := map[string]int{}
	for _, s := range series {
		run, tuning := s.labels["run"], s.labels["tuning"]
		if run == "" || tuning == "" {
			t.Errorf("%s: a series without run or tuning: %v", name, s.labels)
		}
		got[run+"/"+tuning]++
	}
	var keys []string
	for k, n := range got {
		keys = append(keys, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(keys)
	if len(series) != len(want) || len(got) != len(want) {
		t.Errorf("%s: series %v, want one for each of %v", name, keys, sortedKeys(want))
		return
	}
	for k := range want {
		if got[k] != 1 {
			t.Errorf("%s: series %v, want one for each of %v", name, keys, sortedKeys(want))
			return
		}
	}
}

// comparePrometheusConfigs: compose's prometheus.yml scrapes as `stampede bench
// --prometheus` does (same interval, honor_labels, relabelling), so the dashboards
// proven here see the same labels there.
func comparePrometheusConfigs(t *testing.T, benchConfig string) {
	t.Helper()
	var bench, compose promConfig
	readYAML(t, benchConfig, &bench)
	readYAML(t, "prometheus.yml", &compose)
	if len(bench.ScrapeConfigs) != 1 || len(compose.ScrapeConfigs) != 1 {
		t.Fatalf("scrape configs: bench %d, compose %d", len(bench.ScrapeConfigs), len(compose.ScrapeConfigs))
	}
	b, c := bench.ScrapeConfigs[0], compose.ScrapeConfigs[0]
	if bench.Global.ScrapeInterval != compose.Global.ScrapeInterval || b.HonorLabels != c.HonorLabels ||
		!reflect.DeepEqual(b.Relabel, c.Relabel) {
		t.Errorf("compose's prometheus.yml scrapes differently from bench's:\nbench   %s %+v\ncompose %s %+v",
			bench.Global.ScrapeInterval, b, compose.Global.ScrapeInterval, c)
	}
}
