package scenarios

import (
	"math"
	"strings"
	"testing"

	"github.com/stampede-live/stampede/loadgen/report"
)

func TestParseThreshold(t *testing.T) {
	for _, tc := range []struct {
		in     string
		metric string
		op     Op
		value  float64
		text   string
	}{
		{"segment_p99 < 800ms", "segment_p99", OpLT, 800, "segment_p99 < 800ms"},                    // ms metric in ms
		{"segment_p99<0.8s", "segment_p99", OpLT, 800, "segment_p99 < 0.8s"},                        // seconds convert to ms; spaces optional
		{"startup_p90 <= 4s", "startup_p90", OpLE, 4000, "startup_p90 <= 4s"},                       // <=
		{"segment_p50 < 120", "segment_p50", OpLT, 120, "segment_p50 < 120"},                        // bare number: the metric's own unit (ms)
		{"live_latency_p99 < 500ms", "live_latency_p99", OpLT, 0.5, ""},                             // seconds metric given ms
		{"live_latency_p99 < 9", "live_latency_p99", OpLT, 9, ""},                                   // bare number: seconds
		{"error_rate < 0.1%", "error_rate", OpLT, 0.001, "error_rate < 0.1%"},                       // percent
		{"error_rate < 0.001", "error_rate", OpLT, 0.001, ""},                                       // plain fraction
		{"stall_rate < 1e-3", "stall_rate", OpLT, 0.001, ""},                                        // exponent
		{"counter_crashes == 0", "counter_crashes", OpEQ, 0, ""},                                    // ==
		{"errors != 0", "errors", OpNE, 0, ""},                                                      // !=
		{"stall_count >= 1", "stall_count", OpGE, 1, ""},                                            // >=
		{"upstream_requests > 10", "upstream_requests", OpGT, 10, ""},                               // >
		{"generator_bound == false", "generator_bound", OpEQ, 0, ""},                                // flags take true/false
		{"error_emfile == 0", "error_emfile", OpEQ, 0, ""},                                          // error classes
		{"  mirror_hit_ratio   >   90%  ", "mirror_hit_ratio", OpGT, 0.9, "mirror_hit_ratio > 90%"}, // outer and inner space
	} {
		th, err := ParseThreshold(tc.in)
		if err != nil {
			t.Errorf("ParseThreshold(%q): %v", tc.in, err)
			continue
		}
		if th.Metric != tc.metric || th.Op != tc.op || math.Abs(th.Value-tc.value) > 1e-12 || th.Ref != nil {
			t.Errorf("ParseThreshold(%q) = %s %s %v, want %s %s %v", tc.in, th.Metric, th.Op, th.Value, tc.metric, tc.op, tc.value)
		}
		if tc.text != "" && th.String() != tc.text {
			t.Errorf("ParseThreshold(%q).String() = %q, want %q", tc.in, th.String(), tc.text)
		}
	}

	th, err := ParseThreshold("stall_count > dedicated.stall_count")
	if err != nil || th.Ref == nil || *th.Ref != (Ref{"dedicated", "stall_count"}) {
		t.Errorf("reference: %+v, %v", th, err)
	}
}

func TestParseThresholdErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty threshold"},                                                     // nothing
		{"segment_p99", "has no comparison"},                                        // no operator
		{"segment_p99 =< 1s", "unknown operator"},                                   // reversed operator
		{"segment_p99 <", "no value after <"},                                       // no value
		{"segment_p99 < 1s < 2s", "one comparison per threshold"},                   // chained
		{"segment_p99 < 1 minute", `unit "minute" does not fit a time`},             // unknown unit
		{"segment_p99 < 5%", `unit "%" does not fit a time`},                        // % on a time
		{"stall_count < 5ms", `does not fit a count`},                               // unit on a count
		{"segment_p99 < fast", "bad number"},                                        // not a number
		{"segment_p99 < NaN", "bad number"},                                         // NaN
		{"segment_p99 < 1e999", "bad number"},                                       // overflows
		{"p99 < 1s", `unknown metric "p99"`},                                        // unknown metric
		{"Segment_P99 < 1s", `bad metric name`},                                     // not an identifier
		{"generator_bound < 1", "compare it with == or !="},                         // order on a flag
		{"generator_bound == maybe", "want true or false"},                          // not a flag value
		{"stall_count < other.segment_p99", "is a count but segment_p99 is a time"}, // mixed kinds
		{"stall_count < other.nope", `unknown metric "nope"`},                       // bad referenced metric
		{strings.Repeat("a", 300) + " < 1", "longer than"},                          // bounded
	} {
		_, err := ParseThreshold(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseThreshold(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// fullTuning has a distinct non-zero value in every field a metric reads.
func fullTuning(name string) report.Tuning {
	q := func(base float64) report.Quantiles {
		return report.Quantiles{P50: base, P90: base + 1, P99: base + 2, Max: base + 3}
	}
	return report.Tuning{
		Name:         name,
		Viewers:      report.Viewers{Target: 100, Peak: 99, Sessions: 120, Failed: 2},
		Player:       &report.PlayerFigures{MirrorSwitches: 5, Resyncs: 1, StallMs: q(400)},
		Requests:     report.Requests{Playlist: 1000, Segment: 500, Heartbeat: 200},
		LatencyMs:    report.Latencies{Playlist: q(10), Segment: q(100), SegmentTTFB: q(20), Heartbeat: q(5), Startup: q(1500)},
		Stalls:       report.Stalls{Count: 3, Seconds: 4.5, PerViewerMinute: 0.002, RebufferRatio: 0.01, SessionsWithStall: 0.03},
		LiveLatencyS: q(6),
		Errors: report.Errors{Total: 8, Rate: 0.005, ByClass: map[string]int64{
			report.ClassTimeout: 1, report.ClassRefused: 1, report.ClassReset: 1, report.ClassEMFILE: 1,
			report.ClassHTTP4xx: 1, report.ClassHTTP5xx: 1, report.ClassMalformed: 1, report.ClassOther: 1}},
		Origin:    report.OriginFigures{Requests: 77},
		Mirrors:   []report.MirrorFigure{{Name: "mirror-1", HitRatio: 0.9, UpstreamRequests: 40, MaxOpenFDs: 300, EMFILE: 2, Shed: 1}, {Name: "mirror-2", HitRatio: 0.8, UpstreamRequests: 60, MaxOpenFDs: 500, EMFILE: 3, Shed: 4}},
		Counter:   report.CounterFigures{MaxAbsError: 7, Crashes: 2},
		Generator: report.Generator{CPUSeconds: 12, MaxRSSBytes: 1 << 20, LagP99Ms: 3, Bound: true},
	}
}

func TestEveryMetricReadsItsField(t *testing.T) {
	tun := fullTuning("t")
	for _, m := range Metrics() {
		v, ok := metricByID[m.Name].get(&tun)
		if !ok || v == 0 {
			t.Errorf("%s = %v (measured %v) on a tuning with every field set: wired to the wrong field?", m.Name, v, ok)
		}
		if m.Doc == "" || m.Unit == "" {
			t.Errorf("%s: no doc or unit", m.Name)
		}
	}
	// Spot-check the aggregations and the fields the issue names.
	for name, want := range map[string]float64{
		"segment_p99": 102, "ttfb_p50": 20, "startup_p90": 1501, "live_latency_max": 9,
		"stall_rate": 0.002, "rebuffer_ratio": 0.01, "stalled_sessions": 0.03, "error_rate": 0.005,
		"requests": 1700, "upstream_requests": 100, "mirror_hit_ratio": 0.8, "mirror_open_fds_max": 500,
		"mirror_emfile": 5, "mirror_shed": 5, "counter_crashes": 2, "counter_error": 7, "generator_bound": 1,
	} {
		if v, _ := metricByID[name].get(&tun); math.Abs(v-want) > 1e-12 {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}

func TestEval(t *testing.T) {
	a, b := fullTuning("a"), fullTuning("b")
	b.Stalls.Count = 10
	all := []report.Tuning{a, b}
	for _, tc := range []struct {
		expr   string
		tun    report.Tuning
		pass   bool
		detail string
	}{
		{"segment_p99 < 800ms", a, true, ""},                               // 102 ms
		{"segment_p99 < 0.1s", a, false, ""},                               // 102 ms > 100 ms
		{"error_rate < 0.1%", a, false, ""},                                // 0.5 %
		{"counter_crashes == 0", a, false, ""},                             // 2 crashes
		{"generator_bound == true", a, true, ""},                           // flags compare as 0/1
		{"stall_count < b.stall_count", a, true, ""},                       // 3 < 10
		{"stall_count > b.stall_count", a, false, ""},                      // 3 > 10
		{"stall_count < c.stall_count", a, false, `no tuning "c"`},         // unknown tuning fails
		{"mirror_hit_ratio > 50%", report.Tuning{}, false, "not measured"}, // no mirrors: never passes
		{"mirror_switches == 0", report.Tuning{}, false, "not measured"},   // an older summary without player figures
	} {
		th := MustThreshold(tc.expr)
		r := th.Eval(&tc.tun, all)
		if r.Pass != tc.pass || !strings.Contains(r.Detail, tc.detail) {
			t.Errorf("%s: pass=%v detail=%q, want pass=%v detail~%q", tc.expr, r.Pass, r.Detail, tc.pass, tc.detail)
		}
		g := r.GateResult()
		if g.Threshold != th.String() || g.Name != th.Metric || g.Pass != r.Pass {
			t.Errorf("%s: gate result %+v", tc.expr, g)
		}
	}
}

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{
		"segment_p99 < 800ms", "error_rate < 0.1%", "stall_rate < 1e-3", "generator_bound == false",
		"stall_count > dedicated.stall_count", "a<b<c", "x == ", "!=", "segment_p99 < -1s", "errors < 1.5.5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseThreshold(s)
		if err != nil {
			return
		}
		// The canonical text parses to the same threshold.
		again, err := ParseThreshold(th.String())
		if err != nil {
			t.Fatalf("%q parsed, its text %q does not: %v", s, th.String(), err)
		}
		if again.Metric != th.Metric || again.Op != th.Op || again.Value != th.Value || (again.Ref == nil) != (th.Ref == nil) {
			t.Fatalf("%q → %q reads back as %+v, was %+v", s, th.String(), again, th)
		}
		// Evaluating never panics, with or without data.
		empty := report.Tuning{}
		th.Eval(&empty, nil)
	})
}
