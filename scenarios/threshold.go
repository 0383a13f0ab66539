package scenarios

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/stampede-live/stampede/loadgen/report"
)

// A Threshold is a k6-like check over one tuning's summary figures:
//
//	metric op value[unit]      segment_p99 < 800ms, error_rate < 0.1%, counter_crashes == 0
//	metric op tuning.metric    stall_count > dedicated.stall_count
//
// ops are < <= > >= == !=. Units: ms and s for times (a bare number is the metric's own
// unit: milliseconds for request latencies, seconds for live latency), % for ratios,
// true/false for flags. The second form compares with another tuning of the same run
// (the lesson of a scenario is often "A is worse than B").
type Threshold struct {
	Metric string
	Op     Op
	Value  float64 // in the metric's own unit; unused when Ref is set
	Ref    *Ref    // the other tuning's metric, for the second form
	text   string  // canonical text, as printed and recorded in summary gates
}

// Ref names a metric of another tuning of the same run.
type Ref struct {
	Tuning string
	Metric string
}

// Op is a comparison operator.
type Op string

// Comparison operators.
const (
	OpLT Op = "<"
	OpLE Op = "<="
	OpGT Op = ">"
	OpGE Op = ">="
	OpEQ Op = "=="
	OpNE Op = "!="
)

func (o Op) holds(a, b float64) bool {
	switch o {
	case OpLT:
		return a < b
	case OpLE:
		return a <= b
	case OpGT:
		return a > b
	case OpGE:
		return a >= b
	case OpEQ:
		return a == b
	case OpNE:
		return a != b
	}
	return false
}

// String is the canonical text: metric, op and value separated by single spaces.
func (t Threshold) String() string { return t.text }

// MarshalYAML prints the threshold as its text.
func (t Threshold) MarshalYAML() (any, error) { return t.text, nil }

func (t *Threshold) decodeScalar(s string) error {
	th, err := ParseThreshold(s)
	if err != nil {
		return err
	}
	*t = th
	return nil
}

// maxExprLen bounds a threshold's text; real ones are a few dozen characters.
const maxExprLen = 200

// ParseThreshold parses one threshold expression.
func ParseThreshold(s string) (Threshold, error) {
	src := strings.TrimSpace(s)
	if src == "" {
		return Threshold{}, fmt.Errorf("empty threshold (want e.g. segment_p99 < 800ms)")
	}
	if len(src) > maxExprLen {
		return Threshold{}, fmt.Errorf("threshold longer than %d characters", maxExprLen)
	}
	i := strings.IndexAny(src, "<>=!")
	if i < 0 {
		return Threshold{}, fmt.Errorf("threshold %q has no comparison (want metric op value, e.g. segment_p99 < 800ms)", src)
	}
	name := strings.TrimSpace(src[:i])
	rest := src[i:]
	var op Op
	for _, o := range []Op{OpLE, OpGE, OpEQ, OpNE, OpLT, OpGT} { // two-character ops first
		if strings.HasPrefix(rest, string(o)) {
			op = o
			break
		}
	}
	if op == "" {
		return Threshold{}, fmt.Errorf("threshold %q: unknown operator (want <, <=, >, >=, == or !=)", src)
	}
	rhs := strings.TrimSpace(rest[len(op):])
	if strings.ContainsAny(rhs, "<>=!") {
		return Threshold{}, fmt.Errorf("threshold %q: one comparison per threshold", src)
	}
	m, err := lookupMetric(name)
	if err != nil {
		return Threshold{}, fmt.Errorf("threshold %q: %w", src, err)
	}
	th := Threshold{Metric: m.name, Op: op, text: m.name + " " + string(op) + " " + rhs}
	if rhs == "" {
		return Threshold{}, fmt.Errorf("threshold %q: no value after %s", src, op)
	}
	if ref, ok := parseRef(rhs); ok {
		rm, err := lookupMetric(ref.Metric)
		if err != nil {
			return Threshold{}, fmt.Errorf("threshold %q: %w", src, err)
		}
		if rm.kind != m.kind {
			return Threshold{}, fmt.Errorf("threshold %q: %s is %s but %s is %s", src, m.name, m.kind, rm.name, rm.kind)
		}
		th.Ref = &ref
		return th, nil
	}
	v, err := m.kind.parseValue(rhs)
	if err != nil {
		return Threshold{}, fmt.Errorf("threshold %q: %s: %w", src, m.name, err)
	}
	if m.kind == kindFlag && op != OpEQ && op != OpNE {
		return Threshold{}, fmt.Errorf("threshold %q: %s is true or false; compare it with == or !=", src, m.name)
	}
	th.Value = v
	return th, nil
}

// MustThreshold parses s and panics on error; for thresholds written in Go code.
func MustThreshold(s string) Threshold {
	th, err := ParseThreshold(s)
	if err != nil {
		panic(err)
	}
	return th
}

// parseRef recognises tuning.metric (a tuning name, a dot, a metric name).
func parseRef(s string) (Ref, bool) {
	tun, met, ok := strings.Cut(s, ".")
	if !ok || !validTuningName(tun) || !isIdent(met) {
		return Ref{}, false
	}
	return Ref{Tuning: tun, Metric: met}, true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Result is a threshold evaluated against one tuning.
type Result struct {
	Threshold Threshold
	Value     float64 // the tuning's figure, in the metric's unit
	Against   float64 // the right-hand side, in the metric's unit
	Pass      bool
	// Detail explains a failure that is not a plain comparison (no data, unknown tuning).
	Detail string
}

// GateResult is the summary.json form of r.
func (r Result) GateResult() report.GateResult {
	return report.GateResult{Name: r.Threshold.Metric, Threshold: r.Threshold.text, Value: r.Value, Pass: r.Pass}
}

// Eval checks t against tuning tun; all is every tuning of the run, for references
// (it may be nil when t has none). A figure the run did not measure (no mirrors to take
// a hit ratio from) fails: a gate never passes on missing data.
func (t Threshold) Eval(tun *report.Tuning, all []report.Tuning) Result {
	res := Result{Threshold: t, Against: t.Value}
	m, err := lookupMetric(t.Metric)
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	v, ok := m.get(tun)
	if !ok {
		res.Detail = "not measured in this run"
		return res
	}
	res.Value = v
	if t.Ref != nil {
		other := findTuning(all, t.Ref.Tuning)
		if other == nil {
			res.Detail = fmt.Sprintf("no tuning %q in this run to compare with", t.Ref.Tuning)
			return res
		}
		rm, err := lookupMetric(t.Ref.Metric)
		if err != nil {
			res.Detail = err.Error()
			return res
		}
		ov, ok := rm.get(other)
		if !ok {
			res.Detail = fmt.Sprintf("%s not measured in tuning %q", t.Ref.Metric, t.Ref.Tuning)
			return res
		}
		res.Against = ov
	}
	res.Pass = t.Op.holds(res.Value, res.Against)
	return res
}

func findTuning(all []report.Tuning, name string) *report.Tuning {
	for i := range all {
		if all[i].Name == name {
			return &all[i]
		}
	}
	return nil
}

// unitKind is what a metric measures, which decides the units a threshold may use.
type unitKind int

const (
	kindMillis  unitKind = iota // a time in milliseconds (latency_ms figures)
	kindSeconds                 // a time in seconds (live latency, stall seconds)
	kindRatio                   // a fraction 0..1; % allowed
	kindCount                   // a count or a plain number
	kindFlag                    // true (1) or false (0)
)

func (k unitKind) String() string {
	switch k {
	case kindMillis, kindSeconds:
		return "a time"
	case kindRatio:
		return "a ratio"
	case kindFlag:
		return "a flag"
	}
	return "a count"
}

// parseValue reads value[unit] into the metric's own unit.
func (k unitKind) parseValue(s string) (float64, error) {
	if k == kindFlag {
		switch s {
		case "true", "1":
			return 1, nil
		case "false", "0":
			return 0, nil
		}
		return 0, fmt.Errorf("want true or false, got %q", s)
	}
	end := 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.' || s[end] == '-' && end == 0) {
		end++
	}
	// An exponent (1e-3) belongs to the number, not the unit.
	if end < len(s) && (s[end] == 'e' || s[end] == 'E') && end+1 < len(s) {
		j := end + 1
		if s[j] == '+' || s[j] == '-' {
			j++
		}
		if j < len(s) && s[j] >= '0' && s[j] <= '9' {
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			end = j
		}
	}
	num, unit := s[:end], strings.TrimSpace(s[end:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("bad number %q", s)
	}
	switch {
	case unit == "":
		return v, nil
	case unit == "%" && k == kindRatio:
		return v / 100, nil
	case unit == "ms" && k == kindMillis, unit == "s" && k == kindSeconds:
		return v, nil
	case unit == "s" && k == kindMillis:
		return v * 1000, nil
	case unit == "ms" && k == kindSeconds:
		return v / 1000, nil
	}
	switch k {
	case kindMillis, kindSeconds:
		return 0, fmt.Errorf("unit %q does not fit a time (use ms or s)", unit)
	case kindRatio:
		return 0, fmt.Errorf("unit %q does not fit a ratio (use %% or a plain fraction)", unit)
	}
	return 0, fmt.Errorf("unit %q does not fit a count (write a plain number)", unit)
}

// metric is one name a threshold can use, mapped onto report.Tuning.
type metric struct {
	name string
	kind unitKind
	doc  string
	get  func(t *report.Tuning) (float64, bool)
}

// MetricDoc describes one threshold metric, for documentation and `scenario metrics`.
type MetricDoc struct {
	Name string
	Unit string // ms, s, ratio, count, flag
	Doc  string
}

var (
	metricList []metric
	metricByID map[string]metric
)

func always(f func(t *report.Tuning) float64) func(t *report.Tuning) (float64, bool) {
	return func(t *report.Tuning) (float64, bool) { return f(t), true }
}

func quantileMetrics(prefix string, kind unitKind, what string, q func(t *report.Tuning) report.Quantiles) []metric {
	return []metric{
		{prefix + "_p50", kind, what + ", median", always(func(t *report.Tuning) float64 { return q(t).P50 })},
		{prefix + "_p90", kind, what + ", 90th percentile", always(func(t *report.Tuning) float64 { return q(t).P90 })},
		{prefix + "_p99", kind, what + ", 99th percentile", always(func(t *report.Tuning) float64 { return q(t).P99 })},
		{prefix + "_max", kind, what + ", maximum", always(func(t *report.Tuning) float64 { return q(t).Max })},
	}
}

// player reads a figure of the players' own observations, absent in older summaries.
func player(f func(p *report.PlayerFigures) float64) func(t *report.Tuning) (float64, bool) {
	return func(t *report.Tuning) (float64, bool) {
		if t.Player == nil {
			return 0, false
		}
		return f(t.Player), true
	}
}

func playerQuantiles(prefix, what string, q func(p *report.PlayerFigures) report.Quantiles) []metric {
	get := func(pick func(report.Quantiles) float64) func(t *report.Tuning) (float64, bool) {
		return player(func(p *report.PlayerFigures) float64 { return pick(q(p)) })
	}
	return []metric{
		{prefix + "_p50", kindMillis, what + ", median", get(func(q report.Quantiles) float64 { return q.P50 })},
		{prefix + "_p90", kindMillis, what + ", 90th percentile", get(func(q report.Quantiles) float64 { return q.P90 })},
		{prefix + "_p99", kindMillis, what + ", 99th percentile", get(func(q report.Quantiles) float64 { return q.P99 })},
		{prefix + "_max", kindMillis, what + ", maximum", get(func(q report.Quantiles) float64 { return q.Max })},
	}
}

// errorClasses are the classes error_<class> accepts (report's class constants).
var errorClasses = []string{
	report.ClassTimeout, report.ClassRefused, report.ClassReset, report.ClassEMFILE,
	report.ClassHTTP4xx, report.ClassHTTP5xx, report.ClassMalformed, report.ClassOther,
}

func init() {
	var l []metric
	l = append(l, quantileMetrics("segment", kindMillis, "segment download time (request to last byte)", func(t *report.Tuning) report.Quantiles { return t.LatencyMs.Segment })...)
	l = append(l, quantileMetrics("ttfb", kindMillis, "segment time to first byte", func(t *report.Tuning) report.Quantiles { return t.LatencyMs.SegmentTTFB })...)
	l = append(l, quantileMetrics("playlist", kindMillis, "playlist download time", func(t *report.Tuning) report.Quantiles { return t.LatencyMs.Playlist })...)
	l = append(l, quantileMetrics("heartbeat", kindMillis, "counter heartbeat round trip", func(t *report.Tuning) report.Quantiles { return t.LatencyMs.Heartbeat })...)
	l = append(l, quantileMetrics("startup", kindMillis, "join to first frame (first segment buffered)", func(t *report.Tuning) report.Quantiles { return t.LatencyMs.Startup })...)
	l = append(l, quantileMetrics("live_latency", kindSeconds, "wall clock minus the playhead's program date", func(t *report.Tuning) report.Quantiles { return t.LiveLatencyS })...)
	l = append(l, playerQuantiles("stall_length", "length of each stall", func(p *report.PlayerFigures) report.Quantiles { return p.StallMs })...)
	l = append(l,
		metric{"stall_count", kindCount, "stalls (buffer ran dry) over all sessions", always(func(t *report.Tuning) float64 { return float64(t.Stalls.Count) })},
		metric{"stall_seconds", kindSeconds, "time spent stalled over all sessions", always(func(t *report.Tuning) float64 { return t.Stalls.Seconds })},
		metric{"stall_rate", kindCount, "stalls per viewer-minute watched (stalls.per_viewer_minute)", always(func(t *report.Tuning) float64 { return t.Stalls.PerViewerMinute })},
		metric{"rebuffer_ratio", kindRatio, "time stalled / time watched", always(func(t *report.Tuning) float64 { return t.Stalls.RebufferRatio })},
		metric{"stalled_sessions", kindRatio, "share of sessions with at least one stall", always(func(t *report.Tuning) float64 { return t.Stalls.SessionsWithStall })},
		metric{"errors", kindCount, "failed requests, all classes", always(func(t *report.Tuning) float64 { return float64(t.Errors.Total) })},
		metric{"error_rate", kindRatio, "failed requests / all requests", always(func(t *report.Tuning) float64 { return t.Errors.Rate })},
	)
	for _, c := range errorClasses {
		c := c
		l = append(l, metric{"error_" + c, kindCount, "failed requests of class " + c, always(func(t *report.Tuning) float64 { return float64(t.Errors.ByClass[c]) })})
	}
	l = append(l,
		metric{"requests", kindCount, "requests of every kind", always(func(t *report.Tuning) float64 {
			return float64(t.Requests.Playlist + t.Requests.Segment + t.Requests.Heartbeat)
		})},
		metric{"requests_playlist", kindCount, "playlist requests", always(func(t *report.Tuning) float64 { return float64(t.Requests.Playlist) })},
		metric{"requests_segment", kindCount, "segment requests", always(func(t *report.Tuning) float64 { return float64(t.Requests.Segment) })},
		metric{"requests_heartbeat", kindCount, "heartbeat requests", always(func(t *report.Tuning) float64 { return float64(t.Requests.Heartbeat) })},
		metric{"viewers_target", kindCount, "viewers the scenario asked for", always(func(t *report.Tuning) float64 { return float64(t.Viewers.Target) })},
		metric{"viewers_peak", kindCount, "most viewers playing at once", always(func(t *report.Tuning) float64 { return float64(t.Viewers.Peak) })},
		metric{"sessions", kindCount, "viewer sessions started", always(func(t *report.Tuning) float64 { return float64(t.Viewers.Sessions) })},
		metric{"sessions_failed", kindCount, "sessions ended by a fatal player error (a load failed past its retries)", always(func(t *report.Tuning) float64 { return float64(t.Viewers.Failed) })},
		metric{"mirror_switches", kindCount, "viewers' failovers to another mirror after repeated errors", player(func(p *report.PlayerFigures) float64 { return float64(p.MirrorSwitches) })},
		metric{"resyncs", kindCount, "times a player fell out of the live window and jumped back", player(func(p *report.PlayerFigures) float64 { return float64(p.Resyncs) })},
		metric{"origin_requests", kindCount, "requests the origin served", always(func(t *report.Tuning) float64 { return float64(t.Origin.Requests) })},
		metric{"upstream_requests", kindCount, "requests the mirrors sent upstream, summed over mirrors", always(func(t *report.Tuning) float64 {
			var n int64
			for _, m := range t.Mirrors {
				n += m.UpstreamRequests
			}
			return float64(n)
		})},
		metric{"mirror_hit_ratio", kindRatio, "cache hit ratio of the worst mirror", func(t *report.Tuning) (float64, bool) {
			if len(t.Mirrors) == 0 {
				return 0, false
			}
			v := math.Inf(1)
			for _, m := range t.Mirrors {
				v = math.Min(v, m.HitRatio)
			}
			return v, true
		}},
		metric{"mirror_open_fds_max", kindCount, "most open files any mirror held", func(t *report.Tuning) (float64, bool) {
			if len(t.Mirrors) == 0 {
				return 0, false
			}
			var v int64
			for _, m := range t.Mirrors {
				v = max(v, m.MaxOpenFDs)
			}
			return float64(v), true
		}},
		metric{"mirror_emfile", kindCount, "accept/dial failures with EMFILE, summed over mirrors", always(func(t *report.Tuning) float64 {
			var n int64
			for _, m := range t.Mirrors {
				n += m.EMFILE
			}
			return float64(n)
		})},
		metric{"mirror_shed", kindCount, "connections the mirrors refused at their limit, summed", always(func(t *report.Tuning) float64 {
			var n int64
			for _, m := range t.Mirrors {
				n += m.Shed
			}
			return float64(n)
		})},
		metric{"counter_crashes", kindCount, "times the viewer counter process died", always(func(t *report.Tuning) float64 { return float64(t.Counter.Crashes) })},
		metric{"counter_error", kindCount, "largest |counted - true| viewers", always(func(t *report.Tuning) float64 { return float64(t.Counter.MaxAbsError) })},
		metric{"generator_bound", kindFlag, "the load generator fell behind its schedule (run invalid)", always(func(t *report.Tuning) float64 { return b2f(t.Generator.Bound) })},
		metric{"generator_lag_p99", kindMillis, "load generator timer lag, 99th percentile", always(func(t *report.Tuning) float64 { return t.Generator.LagP99Ms })},
		metric{"generator_cpu_seconds", kindSeconds, "CPU time the load generator used", always(func(t *report.Tuning) float64 { return t.Generator.CPUSeconds })},
	)
	metricList = l
	metricByID = make(map[string]metric, len(l))
	for _, m := range l {
		if _, dup := metricByID[m.name]; dup {
			panic("scenarios: metric registered twice: " + m.name)
		}
		metricByID[m.name] = m
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func lookupMetric(name string) (metric, error) {
	if m, ok := metricByID[name]; ok {
		return m, nil
	}
	if !isIdent(name) {
		return metric{}, fmt.Errorf("bad metric name %q", name)
	}
	names := make([]string, 0, len(metricList))
	for _, m := range metricList {
		names = append(names, m.name)
	}
	hint := suggest(name, names)
	return metric{}, fmt.Errorf("unknown metric%s (see `stampede scenario metrics`)", hint)
}

// Metrics lists every metric a threshold can use, sorted by name.
func Metrics() []MetricDoc {
	out := make([]MetricDoc, 0, len(metricList))
	for _, m := range metricList {
		unit := map[unitKind]string{kindMillis: "ms", kindSeconds: "s", kindRatio: "ratio", kindCount: "count", kindFlag: "flag"}[m.kind]
		out = append(out, MetricDoc{Name: m.name, Unit: unit, Doc: m.doc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// formatValue prints v of metric name in its unit, for tables.
func formatValue(name string, v float64) string {
	m, err := lookupMetric(name)
	if err != nil {
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	switch m.kind {
	case kindMillis:
		return trimFloat(v) + "ms"
	case kindSeconds:
		return trimFloat(v) + "s"
	case kindRatio:
		return strconv.FormatFloat(v*100, 'g', 4, 64) + "%"
	case kindFlag:
		return strconv.FormatBool(v != 0)
	}
	return trimFloat(v)
}
