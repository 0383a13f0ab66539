package loadgen

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-live/stampede/loadgen/report"
)

// Histogram ranges. Values are recorded in microseconds (requests, start-up, lag) or
// milliseconds (live latency, stalls) with 3 significant digits in the run totals and 2 in
// the per-second steps; out-of-range values are clamped to the range's top, never dropped.
const (
	maxMicros = int64(time.Hour / time.Microsecond)
	maxMillis = int64(24 * time.Hour / time.Millisecond)
)

// DefaultMaxSeriesPoints bounds the per-second series: past it, adjacent points are
// merged and the step doubles, so a day-long run costs the same memory as a 4-hour one.
const DefaultMaxSeriesPoints = 4 * 3600

// Recorder aggregates what viewers observe in bounded memory: HDR histograms per measure
// and kind/mirror, counters, and a per-second series. Viewers call it concurrently.
type Recorder struct {
	m       *metrics
	mirrors []string
	results *resultsWriter // nil when no per-request results are written

	active atomic.Int64 // viewers in a session
	// closing is set when the swarm starts stopping every viewer at the run's end: from
	// then on the true count falls faster than any counter could follow (it forgets a
	// viewer only after its expiry), so answers are no longer compared with it.
	closing atomic.Bool
	stalled atomic.Int64 // viewers stalled now

	mu sync.Mutex // protects everything below
	// run totals
	latency  [numKinds][]*hdr.Histogram // [kind][mirror], µs, answered requests
	ttfb     []*hdr.Histogram           // segments, [mirror], µs
	startup  *hdr.Histogram             // µs
	live     *hdr.Histogram             // ms
	stallDur *hdr.Histogram             // ms
	lagHist  *hdr.Histogram             // µs
	requests [numKinds]int64
	errors   [numClasses]int64
	errTotal int64
	bytes    [numKinds]int64
	aborted  int64 // requests cut short by stopping the viewer (not errors)

	stallCount   int64
	stallSeconds float64
	played       float64 // seconds of media played
	sessions     int64   // started
	ended        int64
	withStall    int64
	failed       int64 // ended by a fatal error
	reasons      map[string]int64
	peak         int64

	mirrorSwitches, levelUp, levelDown, resyncs int64
	counterAnswers                              int64
	counterMaxAbsErr                            int64

	// the step in progress
	stepStart time.Time
	cur       stepAcc
	series    []report.SeriesPoint
	pend      report.SeriesPoint // ticks merged so far into the next point
	pendN     int                // how many
	stepN     int                // ticks per point (1, doubling as the series fills)
	maxPoints int
	started   time.Time
}

// stepAcc accumulates one step of the series.
type stepAcc struct {
	requests                   [numKinds]int64
	bytes                      int64
	playlist, segment, segTTFB *hdr.Histogram
	lag                        *hdr.Histogram
	stalls                     int64
	stallSeconds               float64
	errors                     [numClasses]int64
	counterAnswer              int64
}

func newHist(max int64, digits int) *hdr.Histogram { return hdr.New(1, max, digits) }

// record clamps v into h's range.
func record(h *hdr.Histogram, v int64) {
	if v < 1 {
		v = 1
	}
	if max := h.HighestTrackableValue(); v > max {
		v = max
	}
	_ = h.RecordValue(v) // in range by construction
}

// NewRecorder returns a recorder for viewers using the given mirrors (metric label
// values), registering its metrics with reg (nil: a private registry).
func NewRecorder(reg prometheus.Registerer, mirrors []string) *Recorder {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if len(mirrors) == 0 {
		mirrors = []string{"default"}
	}
	r := &Recorder{
		m:         newMetrics(reg, mirrors),
		mirrors:   mirrors,
		startup:   newHist(maxMicros, 3),
		live:      newHist(maxMillis, 3),
		stallDur:  newHist(maxMillis, 3),
		lagHist:   newHist(maxMicros, 3),
		reasons:   map[string]int64{},
		stepN:     1,
		maxPoints: DefaultMaxSeriesPoints,
	}
	for k := range r.latency {
		for range mirrors {
			r.latency[k] = append(r.latency[k], newHist(maxMicros, 3))
		}
	}
	for range mirrors {
		r.ttfb = append(r.ttfb, newHist(maxMicros, 3))
	}
	r.cur = stepAcc{
		playlist: newHist(maxMicros, 2), segment: newHist(maxMicros, 2),
		segTTFB: newHist(maxMicros, 2), lag: newHist(maxMicros, 2), counterAnswer: -1,
	}
	return r
}

// begin marks the start of the run (time zero of the series).
func (r *Recorder) begin(now time.Time) {
	r.mu.Lock()
	r.started, r.stepStart = now, now
	r.mu.Unlock()
}

// request records one finished request. aborted means the viewer was being stopped and
// the request was cut short: it is counted when it reached the server, never as an error.
func (r *Recorder) request(req *request, mirror int, res *response, aborted bool) {
	if mirror < 0 || mirror >= len(r.mirrors) {
		mirror = 0
	}
	k := req.kind
	failed := res.err != nil
	var cls classIndex
	if failed {
		cls = classifyError(res.err)
	} else if c, bad := classifyStatus(res.code); bad {
		failed, cls = true, c
	}
	if aborted && res.err != nil {
		if !res.sent {
			return
		}
		r.mu.Lock()
		r.requests[k]++
		r.aborted++
		r.cur.requests[k]++
		r.mu.Unlock()
		r.m.requests[k][codeClassIndex(0, res.err)].Inc()
		return
	}
	micros := int64(res.total / time.Microsecond)
	ttfbMicros := int64(res.ttfb / time.Microsecond)
	answered := res.code != 0

	r.mu.Lock()
	r.requests[k]++
	r.cur.requests[k]++
	r.bytes[k] += res.bytes
	r.cur.bytes += res.bytes
	if answered {
		record(r.latency[k][mirror], micros)
		switch k {
		case KindPlaylist:
			record(r.cur.playlist, micros)
		case KindSegment:
			record(r.cur.segment, micros)
			record(r.cur.segTTFB, ttfbMicros)
			record(r.ttfb[mirror], ttfbMicros)
		}
	}
	if failed {
		r.errors[cls]++
		r.errTotal++
		r.cur.errors[cls]++
	}
	r.mu.Unlock()

	r.m.requests[k][codeClassIndex(res.code, res.err)].Inc()
	r.m.bytes[k].Add(float64(res.bytes))
	if answered {
		r.m.duration[k][mirror].Observe(res.total.Seconds())
		r.m.ttfb[k][mirror].Observe(res.ttfb.Seconds())
	}
	if failed {
		r.m.errors[k][cls].Inc()
	}
	if r.results != nil {
		r.results.write(req, res)
	}
}

// sessionStarted counts a viewer joining.
func (r *Recorder) sessionStarted() {
	n := r.active.Add(1)
	r.m.active.Set(float64(n))
	r.mu.Lock()
	r.sessions++
	if n > r.peak {
		r.peak = n
	}
	r.mu.Unlock()
}

// sessionStats is what a viewer reports when its session ends.
type sessionStats struct {
	reason       string
	played       time.Duration
	stalls       int64
	stallSeconds float64 // includes a stall still running at the end
	fatal        bool
}

// Session end reasons (the sessions_total label).
const (
	reasonChurn   = "churn"   // the session length drawn for it ran out
	reasonEnd     = "end"     // the stream ended (EXT-X-ENDLIST played out)
	reasonFatal   = "fatal"   // a load failed past its retries, as hls.js's fatal error
	reasonStopped = "stopped" // the run ended
)

func (r *Recorder) sessionEnded(s sessionStats) {
	n := r.active.Add(-1)
	r.m.active.Set(float64(n))
	r.m.sessions.WithLabelValues(s.reason).Inc()
	r.mu.Lock()
	r.ended++
	r.reasons[s.reason]++
	r.played += s.played.Seconds()
	if s.stalls > 0 {
		r.withStall++
	}
	if s.fatal {
		r.failed++
	}
	r.mu.Unlock()
}

// played adds media time played; viewers report it as it accrues so the counter moves
// during long sessions.
func (r *Recorder) playedFor(d time.Duration) {
	if d > 0 {
		r.m.played.Add(d.Seconds())
	}
}

func (r *Recorder) stallBegan() {
	r.m.stalled.Set(float64(r.stalled.Add(1)))
	r.m.stalls.Inc()
	r.mu.Lock()
	r.stallCount++
	r.cur.stalls++
	r.mu.Unlock()
}

// stallEnded records a stall's length; counted says whether it ended by a segment
// landing (a complete stall) or was cut off by the session's end.
func (r *Recorder) stallEnded(d time.Duration, complete bool) {
	r.m.stalled.Set(float64(r.stalled.Add(-1)))
	if complete {
		r.m.stallSecs.Observe(d.Seconds())
	}
	r.mu.Lock()
	r.stallSeconds += d.Seconds()
	r.cur.stallSeconds += d.Seconds()
	if complete {
		record(r.stallDur, int64(d/time.Millisecond))
	}
	r.mu.Unlock()
}

func (r *Recorder) startupTook(d time.Duration) {
	r.m.startup.Observe(d.Seconds())
	r.mu.Lock()
	record(r.startup, int64(d/time.Microsecond))
	r.mu.Unlock()
}

func (r *Recorder) liveLatency(d time.Duration) {
	r.m.liveLatency.Observe(d.Seconds())
	r.mu.Lock()
	record(r.live, int64(d/time.Millisecond))
	r.mu.Unlock()
}

// lag records how late a timer fired.
func (r *Recorder) lag(d time.Duration) {
	if d < 0 {
		d = 0
	}
	r.m.lag.Observe(d.Seconds())
	r.mu.Lock()
	record(r.lagHist, int64(d/time.Microsecond))
	record(r.cur.lag, int64(d/time.Microsecond))
	r.mu.Unlock()
}

// counterAnswered compares the counter's answer with the viewers really in a session.
func (r *Recorder) counterAnswered(n int64) {
	r.m.counterAnswer.Set(float64(n))
	truth := r.active.Load()
	diff := n - truth
	if diff < 0 {
		diff = -diff
	}
	if r.closing.Load() {
		diff = 0
	}
	r.mu.Lock()
	r.counterAnswers++
	if diff > r.counterMaxAbsErr {
		r.counterMaxAbsErr = diff
	}
	r.cur.counterAnswer = n
	r.mu.Unlock()
}

func (r *Recorder) mirrorSwitched() {
	r.m.mirrorSwitch.Inc()
	r.mu.Lock()
	r.mirrorSwitches++
	r.mu.Unlock()
}

func (r *Recorder) levelSwitched(up bool) {
	if up {
		r.m.levelUp.Inc()
	} else {
		r.m.levelDown.Inc()
	}
	r.mu.Lock()
	if up {
		r.levelUp++
	} else {
		r.levelDown++
	}
	r.mu.Unlock()
}

func (r *Recorder) resynced() {
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
}

// tick closes the step ending at now and returns its point.
func (r *Recorder) tick(now time.Time) report.SeriesPoint {
	active := int(r.active.Load())
	stalled := int(r.stalled.Load())
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &r.cur
	p := report.SeriesPoint{
		T:             now.Sub(r.started).Seconds(),
		Active:        active,
		Stalled:       stalled,
		BytesIn:       c.bytes,
		PlaylistMs:    pointQ(c.playlist),
		SegmentMs:     pointQ(c.segment),
		SegmentTTFBMs: pointQ(c.segTTFB),
		Stalls:        c.stalls,
		StallSeconds:  c.stallSeconds,
		CounterAnswer: c.counterAnswer,
		Truth:         active,
		LagP99Ms:      float64(c.lag.ValueAtQuantile(99)) / 1e3,
		LagMaxMs:      float64(c.lag.Max()) / 1e3,
	}
	if c.lag.TotalCount() == 0 {
		p.LagMaxMs = 0
	}
	p.Requests.Playlist = c.requests[KindPlaylist]
	p.Requests.Segment = c.requests[KindSegment]
	p.Requests.Heartbeat = c.requests[KindHeartbeat]
	p.Requests.Ping = c.requests[KindPing]
	for i, n := range c.errors {
		if n > 0 {
			if p.Errors == nil {
				p.Errors = map[string]int64{}
			}
			p.Errors[errorClasses[i]] = n
		}
	}
	r.appendPoint(p)
	c.playlist.Reset()
	c.segment.Reset()
	c.segTTFB.Reset()
	c.lag.Reset()
	*c = stepAcc{playlist: c.playlist, segment: c.segment, segTTFB: c.segTTFB, lag: c.lag, counterAnswer: -1}
	r.stepStart = now
	return p
}

func pointQ(h *hdr.Histogram) report.PointQuantiles {
	return report.PointQuantiles{P50: float64(h.ValueAtQuantile(50)) / 1e3, P99: float64(h.ValueAtQuantile(99)) / 1e3}
}

// appendPoint adds p, merging ticks into steps of stepN seconds; when the series is
// full, adjacent points merge and the step doubles. Must hold r.mu.
func (r *Recorder) appendPoint(p report.SeriesPoint) {
	if r.pendN > 0 {
		p = mergePoints(r.pend, p)
	}
	r.pendN++
	if r.pendN < r.stepN {
		r.pend = p
		return
	}
	r.pendN = 0
	r.series = append(r.series, p)
	if len(r.series) <= r.maxPoints {
		return
	}
	half := r.series[:0]
	for i := 0; i+1 < len(r.series); i += 2 {
		half = append(half, mergePoints(r.series[i], r.series[i+1]))
	}
	if len(r.series)%2 == 1 {
		// The odd point out becomes the start of the next, coarser step.
		r.pend, r.pendN = r.series[len(r.series)-1], r.stepN
	}
	clear(r.series[len(half):])
	r.series = half
	r.stepN *= 2
}

// mergePoints combines two adjacent steps: counts add, levels and times take the later,
// quantiles take the worse (a merged p99 is an upper bound, never an underestimate).
func mergePoints(a, b report.SeriesPoint) report.SeriesPoint {
	m := b
	m.Requests.Playlist += a.Requests.Playlist
	m.Requests.Segment += a.Requests.Segment
	m.Requests.Heartbeat += a.Requests.Heartbeat
	m.Requests.Ping += a.Requests.Ping
	m.BytesIn += a.BytesIn
	m.Stalls += a.Stalls
	m.StallSeconds += a.StallSeconds
	worse := func(x, y report.PointQuantiles) report.PointQuantiles {
		return report.PointQuantiles{P50: math.Max(x.P50, y.P50), P99: math.Max(x.P99, y.P99)}
	}
	m.PlaylistMs = worse(a.PlaylistMs, b.PlaylistMs)
	m.SegmentMs = worse(a.SegmentMs, b.SegmentMs)
	m.SegmentTTFBMs = worse(a.SegmentTTFBMs, b.SegmentTTFBMs)
	m.LagP99Ms = math.Max(a.LagP99Ms, b.LagP99Ms)
	m.LagMaxMs = math.Max(a.LagMaxMs, b.LagMaxMs)
	if m.CounterAnswer < 0 {
		m.CounterAnswer = a.CounterAnswer
	}
	if len(a.Errors) > 0 {
		errs := map[string]int64{}
		for k, v := range a.Errors {
			errs[k] += v
		}
		for k, v := range b.Errors {
			errs[k] += v
		}
		m.Errors = errs
	}
	return m
}

// Requests is the number of requests of kind k recorded so far.
func (r *Recorder) Requests(k Kind) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[k]
}

// Active is the number of viewers in a session now.
func (r *Recorder) Active() int { return int(r.active.Load()) }
