package scenarios

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
)

// goodTuning is a clean run: no stalls, no errors, generator fine.
func goodTuning(name string) report.Tuning {
	q := func(p50, p99 float64) report.Quantiles {
		return report.Quantiles{P50: p50, P90: (p50 + p99) / 2, P99: p99, Max: p99 * 2}
	}
	return report.Tuning{
		Name: name, Pass: true, DurationS: 60,
		Viewers:      report.Viewers{Target: 1000, Peak: 1000, Sessions: 1000},
		Requests:     report.Requests{Playlist: 30000, Segment: 30000, Heartbeat: 12000},
		LatencyMs:    report.Latencies{Playlist: q(2, 10), Segment: q(20, 300), SegmentTTFB: q(2, 30), Heartbeat: q(1, 4), Startup: q(900, 2500)},
		LiveLatencyS: q(6, 8),
		Errors:       report.Errors{ByClass: map[string]int64{}},
		Mirrors:      []report.MirrorFigure{{Name: "mirror-1", HitRatio: 0.99, UpstreamRequests: 100, MaxOpenFDs: 400}},
		Gates: []report.GateResult{
			{Name: "segment_p99", Threshold: "segment_p99 < 500ms", Value: 300, Pass: true},
			{Name: "stall_count", Threshold: "stall_count == 0", Value: 0, Pass: true},
		},
	}
}

func summaryOf(tunings ...report.Tuning) *report.Summary {
	return &report.Summary{Schema: report.SchemaVersion, Run: "r1", Scenario: "baseline", Started: time.Unix(0, 0).UTC(), Pass: true, Tunings: tunings}
}

func TestGate(t *testing.T) {
	stalled := goodTuning("default")
	stalled.Stalls.Count = 1
	slow := goodTuning("default")
	slow.LatencyMs.Segment.P99 = 900
	bound := goodTuning("default")
	bound.Generator.Bound = true
	incomplete := summaryOf(goodTuning("default"))
	incomplete.Incomplete = true

	for _, tc := range []struct {
		name   string
		sum    *report.Summary
		cfg    GateConfig
		pass   bool
		failed []string // names of the failing checks
	}{
		// recorded gates hold
		{"pass", summaryOf(goodTuning("default")), GateConfig{}, true, nil},
		// recorded gates are re-evaluated against the figures, not trusted
		{"recorded gate fails on the figures", summaryOf(slow), GateConfig{}, false, []string{"segment_p99"}},
		// a --threshold adds a check
		{"extra threshold fails", summaryOf(stalled), GateConfig{Thresholds: []Threshold{MustThreshold("error_rate < 0.1%")}}, false, []string{"stall_count"}},
		{"extra threshold", summaryOf(goodTuning("default")), GateConfig{Thresholds: []Threshold{MustThreshold("startup_p90 < 1s")}}, false, []string{"startup_p90"}},
		// a bound generator never passes, whatever the thresholds say
		{"generator bound", summaryOf(bound), GateConfig{}, false, []string{"generator_bound"}},
		// an interrupted run never passes
		{"incomplete", incomplete, GateConfig{}, false, []string{"complete"}},
		// a tuning filter keeps failing tunings out
		{"filter", summaryOf(stalled, goodTuning("fixed")), GateConfig{Tunings: []string{"fixed"}}, true, nil},
		{"no filter", summaryOf(stalled, goodTuning("fixed")), GateConfig{}, false, []string{"stall_count"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Gate(tc.sum, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if v.Pass != tc.pass {
				var buf bytes.Buffer
				v.WriteTable(&buf)
				t.Errorf("pass = %v, want %v\n%s", v.Pass, tc.pass, buf.String())
			}
			var failed []string
			for _, c := range v.Failed() {
				failed = append(failed, c.Name)
			}
			if strings.Join(failed, ",") != strings.Join(tc.failed, ",") {
				t.Errorf("failed checks %v, want %v", failed, tc.failed)
			}
		})
	}
}

func TestGateRegression(t *testing.T) {
	base := summaryOf(goodTuning("default"))
	for _, tc := range []struct {
		name   string
		change func(t *report.Tuning)
		cfg    GateConfig
		failed []string
	}{
		// identical runs
		{"same", func(*report.Tuning) {}, GateConfig{}, nil},
		// +10 % exactly plus less than the floor: noise
		{"within tolerance", func(t *report.Tuning) { t.LatencyMs.Segment.P99 = 300*1.10 + 4 }, GateConfig{}, nil},
		// a 2 ms p50 doubling is under the 5 ms floor
		{"small quantile doubles", func(t *report.Tuning) { t.LatencyMs.Playlist.P50 = 4 }, GateConfig{}, nil},
		// beyond tolerance and floor
		{"latency regression", func(t *report.Tuning) { t.LatencyMs.Segment.P99 = 300*1.10 + 6 }, GateConfig{}, []string{"segment_p99"}},
		// a wider tolerance lets it through
		{"wider tolerance", func(t *report.Tuning) { t.LatencyMs.Segment.P99 = 400 }, GateConfig{MaxRegression: 0.5}, nil},
		// live latency is compared too (seconds, floor converted)
		{"live latency", func(t *report.Tuning) { t.LiveLatencyS.P50 = 12 }, GateConfig{}, []string{"live_latency_p50"}},
		// one more stall is a regression: counts are exact
		// (the recorded gate stall_count == 0 fails too)
		{"one stall", func(t *report.Tuning) { t.Stalls.Count = 1 }, GateConfig{}, []string{"stall_count", "stall_count"}},
		// one more error of a class
		{"one error", func(t *report.Tuning) { t.Errors.Total = 1; t.Errors.ByClass[report.ClassReset] = 1 }, GateConfig{}, []string{"errors", "error_reset"}},
		// a crash
		{"crash", func(t *report.Tuning) { t.Counter.Crashes = 1 }, GateConfig{}, []string{"counter_crashes"}},
		// fewer stalls than the baseline is fine
		{"improvement", func(t *report.Tuning) { t.LatencyMs.Segment.P99 = 100 }, GateConfig{}, nil},
		// different loads cannot be compared
		{"different viewers", func(t *report.Tuning) { t.Viewers.Target = 2000 }, GateConfig{}, []string{"comparable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := goodTuning("default")
			tc.change(&cur)
			tc.cfg.Baseline = base
			v, err := Gate(summaryOf(cur), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var failed []string
			for _, c := range v.Failed() {
				failed = append(failed, c.Name)
			}
			if strings.Join(failed, ",") != strings.Join(tc.failed, ",") {
				var buf bytes.Buffer
				v.WriteTable(&buf)
				t.Errorf("failed checks %v, want %v\n%s", failed, tc.failed, buf.String())
			}
			if v.Pass != (len(tc.failed) == 0) {
				t.Errorf("pass = %v with failures %v", v.Pass, failed)
			}
		})
	}

	// A baseline whose generator was bound is no baseline.
	bad := goodTuning("default")
	bad.Generator.Bound = true
	v, err := Gate(summaryOf(goodTuning("default")), GateConfig{Baseline: summaryOf(bad)})
	if err != nil || v.Pass {
		t.Errorf("bound baseline: pass=%v err=%v", v != nil && v.Pass, err)
	}
	// A tuning the baseline lacks is new: noted, not failed.
	v, err = Gate(summaryOf(goodTuning("new")), GateConfig{Baseline: base})
	if err != nil || !v.Pass {
		t.Errorf("new tuning: pass=%v err=%v", v != nil && v.Pass, err)
	}
}

func TestGateBadInput(t *testing.T) {
	noGates := goodTuning("default")
	noGates.Gates = nil
	badGate := goodTuning("default")
	badGate.Gates = append(badGate.Gates, report.GateResult{Threshold: "segmnt_p99 < 1s"})
	for _, tc := range []struct {
		name string
		sum  *report.Summary
		cfg  GateConfig
		want string
	}{
		{"no tunings", summaryOf(), GateConfig{}, "no tunings"},
		{"nil", nil, GateConfig{}, "no tunings"},
		{"nothing to check", summaryOf(noGates), GateConfig{}, "nothing to check"},
		{"recorded gate does not parse", summaryOf(badGate), GateConfig{}, "unknown metric"},
		{"unknown tuning", summaryOf(goodTuning("a")), GateConfig{Tunings: []string{"b"}}, `no tuning "b"`},
		{"negative tolerance", summaryOf(goodTuning("a")), GateConfig{MaxRegression: -1}, "negative"},
	} {
		_, err := Gate(tc.sum, tc.cfg)
		if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrBadInput containing %q", tc.name, err, tc.want)
		}
	}
}

func TestJUnitIsWellFormed(t *testing.T) {
	failing := goodTuning("b<&>")
	failing.Stalls.Count = 2
	v, err := Gate(summaryOf(goodTuning("a"), failing), GateConfig{Baseline: summaryOf(goodTuning("a"))})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := v.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not XML: %v\n%s", err, buf.String())
	}
	if got.Tests != len(v.Checks) || got.Failures != len(v.Failed()) || got.Failures == 0 {
		t.Errorf("tests=%d failures=%d, want %d and %d", got.Tests, got.Failures, len(v.Checks), len(v.Failed()))
	}
	if len(got.Suites) != 2 || got.Suites[1].Name != "baseline/b<&>" {
		t.Fatalf("suites %+v", got.Suites)
	}
	n := 0
	for _, s := range got.Suites {
		sum := 0
		for _, c := range s.Cases {
			if c.Failure != nil {
				sum++
				if c.Failure.Message == "" {
					t.Errorf("failure without a message in %s", c.Name)
				}
			}
		}
		if sum != s.Failures || len(s.Cases) != s.Tests {
			t.Errorf("suite %s: counts disagree with its cases", s.Name)
		}
		n += sum
	}
	if n != got.Failures {
		t.Errorf("failures %d, cases say %d", got.Failures, n)
	}
	if !strings.HasPrefix(buf.String(), "<?xml") {
		t.Error("no XML header")
	}
}

func TestTableMarksFailures(t *testing.T) {
	bad := goodTuning("default")
	bad.Generator.Bound = true
	v, _ := Gate(summaryOf(bad), GateConfig{})
	var buf bytes.Buffer
	if err := v.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"TUNING", "generator kept up", "FAIL", "fell behind", "FAIL: 1 of 3 checks failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestEvaluateAndExpectations(t *testing.T) {
	s, err := Load("map-race")
	if err != nil {
		t.Fatal(err)
	}
	unsafe, sharded := goodTuning("unsafe"), goodTuning("sharded")
	unsafe.Counter.Crashes = 3
	sum := summaryOf(unsafe, sharded)
	gates, pass := Evaluate(s.GateThresholds(&s.Tunings[0]), &sum.Tunings[0], sum.Tunings)
	if pass || len(gates) != len(s.Thresholds) {
		t.Errorf("unsafe: pass=%v gates=%v", pass, gates)
	}
	if _, pass := Evaluate(s.GateThresholds(&s.Tunings[2]), &sum.Tunings[1], sum.Tunings); !pass {
		t.Error("sharded should pass")
	}
	bound := goodTuning("x")
	bound.Generator.Bound = true
	if _, pass := Evaluate(nil, &bound, nil); pass {
		t.Error("a bound generator passed Evaluate")
	}
	// The lesson held: unsafe crashed, sharded did not; mutex was not run.
	checks := Expectations(s, sum)
	if len(checks) != 2 {
		t.Fatalf("expectations %+v", checks)
	}
	for _, c := range checks {
		if !c.Pass || c.Kind != CheckExpect {
			t.Errorf("%s %s: pass=%v", c.Tuning, c.Rule, c.Pass)
		}
	}
	sum.Tunings[0].Counter.Crashes = 0 // the crash did not reproduce
	if checks := Expectations(s, sum); checks[0].Pass {
		t.Error("unsafe without crashes met its expectation")
	}
}
