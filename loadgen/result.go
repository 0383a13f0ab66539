package loadgen

import (
	"fmt"
	"sort"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/stampede-live/stampede/loadgen/report"
)

// Result is what a run recorded: the figures of one summary.json tuning entry and the
// per-second series.
type Result struct {
	Started    time.Time
	Elapsed    time.Duration
	Incomplete bool // cut short by the caller's context
	// Figures is the tuning entry without its name; Tuning adds it.
	Figures report.Tuning
	Series  report.Series
	// Reasons counts sessions by how they ended (churn, end, fatal, stopped).
	Reasons map[string]int64
}

// Tuning returns the figures as the summary entry named name.
func (r *Result) Tuning(name string) report.Tuning {
	t := r.Figures
	t.Name = name
	return t
}

// Summary wraps the result as a one-tuning summary.json.
func (r *Result) Summary(run, scenario, tuning string) *report.Summary {
	t := r.Tuning(tuning)
	return &report.Summary{
		Schema: report.SchemaVersion, Run: run, Scenario: scenario, Started: r.Started,
		Pass: t.Pass, Incomplete: r.Incomplete, Tunings: []report.Tuning{t},
	}
}

func quantMicrosToMs(h *hdr.Histogram) report.Quantiles {
	if h.TotalCount() == 0 {
		return report.Quantiles{}
	}
	return report.Quantiles{
		P50: float64(h.ValueAtQuantile(50)) / 1e3, P90: float64(h.ValueAtQuantile(90)) / 1e3,
		P99: float64(h.ValueAtQuantile(99)) / 1e3, Max: float64(h.Max()) / 1e3,
	}
}

func mergeAll(hs []*hdr.Histogram) *hdr.Histogram {
	out := newHist(maxMicros, 3)
	for _, h := range hs {
		out.Merge(h)
	}
	return out
}

// result computes the run's figures. Histogram quantiles carry HDR's 3-digit precision.
func (r *Recorder) result(start, end time.Time, target int, gen report.Generator, incomplete bool, lagLimit time.Duration) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Mirrors and gates are filled by whoever ran the servers and the thresholds (stampede
	// bench); empty, not null, in a summary of viewers alone.
	t := report.Tuning{DurationS: end.Sub(start).Seconds(), Mirrors: []report.MirrorFigure{}, Gates: []report.GateResult{}}
	t.Viewers = report.Viewers{Target: target, Peak: int(r.peak), Sessions: int(r.sessions), Failed: int(r.failed)}
	t.Requests = report.Requests{
		Playlist: r.requests[KindPlaylist], Segment: r.requests[KindSegment],
		Heartbeat: r.requests[KindHeartbeat], Ping: r.requests[KindPing],
	}
	t.LatencyMs = report.Latencies{
		Playlist:    quantMicrosToMs(mergeAll(r.latency[KindPlaylist])),
		Segment:     quantMicrosToMs(mergeAll(r.latency[KindSegment])),
		SegmentTTFB: quantMicrosToMs(mergeAll(r.ttfb)),
		Heartbeat:   quantMicrosToMs(mergeAll(r.latency[KindHeartbeat])),
		Startup:     quantMicrosToMs(r.startup),
	}
	watched := r.played + r.stallSeconds
	t.Stalls = report.Stalls{Count: r.stallCount, Seconds: r.stallSeconds}
	if watched > 0 {
		t.Stalls.PerViewerMinute = float64(r.stallCount) / (watched / 60)
		t.Stalls.RebufferRatio = r.stallSeconds / watched
	}
	if r.ended > 0 {
		t.Stalls.SessionsWithStall = float64(r.withStall) / float64(r.ended)
	}
	if r.live.TotalCount() > 0 {
		t.LiveLatencyS = report.Quantiles{
			P50: float64(r.live.ValueAtQuantile(50)) / 1e3, P90: float64(r.live.ValueAtQuantile(90)) / 1e3,
			P99: float64(r.live.ValueAtQuantile(99)) / 1e3, Max: float64(r.live.Max()) / 1e3,
		}
	}
	var all int64
	for _, n := range r.requests {
		all += n
	}
	t.Errors = report.Errors{Total: r.errTotal, ByClass: map[string]int64{}}
	for i, n := range r.errors {
		t.Errors.ByClass[errorClasses[i]] = n
	}
	if all > 0 {
		t.Errors.Rate = float64(r.errTotal) / float64(all)
	}
	t.Counter = report.CounterFigures{MaxAbsError: r.counterMaxAbsErr}
	t.Player = &report.PlayerFigures{
		MirrorSwitches: r.mirrorSwitches, RenditionUp: r.levelUp, RenditionDown: r.levelDown,
		Resyncs: r.resyncs, AbortedRequests: r.aborted, CounterAnswers: r.counterAnswers,
		BytesIn: r.bytes[KindSegment] + r.bytes[KindPlaylist] + r.bytes[KindHeartbeat] + r.bytes[KindPing],
		StallMs: quantMillis(r.stallDur),
	}
	if n := r.errors[clsEMFILE]; n > 0 {
		// A viewer's own socket() failing is this process out of descriptors, never the
		// server's: the load was not applied as scheduled.
		gen.Bound = true
		t.Notes = append(t.Notes, fmt.Sprintf("generator-bound: %d requests failed with too many open files in the load generator itself (raise its open-files limit or run fewer viewers per process)", n))
	}
	t.Generator = gen
	t.Pass = !gen.Bound && !incomplete
	if gen.LagP99Ms > float64(lagLimit/time.Millisecond) {
		t.Notes = append(t.Notes, fmt.Sprintf("generator-bound: timer lag p99 %.1f ms is over the %v limit; the run is invalid", gen.LagP99Ms, lagLimit))
	}
	if r.failed > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%d sessions ended on a fatal player error (a load failed past its retries)", r.failed))
	}
	if r.aborted > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%d requests were still in flight when the run stopped and were cut short", r.aborted))
	}
	if incomplete {
		t.Notes = append(t.Notes, "interrupted before its planned end: figures cover the time it ran")
	}

	series := report.Series{StepS: float64(r.stepN), Points: append([]report.SeriesPoint(nil), r.series...)}
	if r.pendN > 0 {
		series.Points = append(series.Points, r.pend)
	}
	reasons := map[string]int64{}
	keys := make([]string, 0, len(r.reasons))
	for k := range r.reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		reasons[k] = r.reasons[k]
	}
	return &Result{Started: start, Elapsed: end.Sub(start), Incomplete: incomplete,
		Figures: t, Series: series, Reasons: reasons}
}

func quantMillis(h *hdr.Histogram) report.Quantiles {
	if h.TotalCount() == 0 {
		return report.Quantiles{}
	}
	return report.Quantiles{
		P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
		P99: float64(h.ValueAtQuantile(99)), Max: float64(h.Max()),
	}
}
