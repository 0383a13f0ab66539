package origin

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-live/stampede/internal/serverkit"
)

// Every metric the origin exports (the process collector adds process_open_fds and
// process_max_fds; the Go collector the runtime's).
const (
	// MetricRequests counts requests by kind and HTTP status code.
	MetricRequests = "stampede_origin_requests_total"
	// MetricResponseBytes counts response body bytes written, by kind.
	MetricResponseBytes = "stampede_origin_response_bytes_total"
	// MetricInFlight is the number of requests being served.
	MetricInFlight = "stampede_origin_requests_in_flight"
	// MetricDuration is the time to serve a request, by kind.
	MetricDuration = "stampede_origin_request_duration_seconds"
	// MetricSegmentsBuilt counts synthetic segments built, by rendition: once per
	// segment however many viewers fetch it.
	MetricSegmentsBuilt = "stampede_origin_segments_built_total"
	// MetricLiveEdge is the media sequence number of the newest published segment of the
	// synthetic stream (-1 before the first).
	MetricLiveEdge = "stampede_origin_live_edge_sequence"
	// MetricFFmpegUp is 1 while the ffmpeg this origin started is running (FFmpeg mode).
	MetricFFmpegUp = "stampede_origin_ffmpeg_up"
)

// Request kinds, the values of the kind label.
type kind int

const (
	kindMaster   kind = iota // the multivariant playlist
	kindPlaylist             // a media playlist
	kindSegment              // a media segment
	kindMetrics              // /metrics
	kindHealthz              // /healthz
	kindOther                // anything else (always 404 or 405)
	numKinds
)

var kindNames = [numKinds]string{"master", "playlist", "segment", "metrics", "healthz", "other"}

func (k kind) String() string { return kindNames[k] }

// hotKey is a kind and status code whose counter is looked up once, not per request.
type hotKey struct {
	kind kind
	code int
}

// expectedRequests are the outcomes a healthy origin serves all the time; their series
// exist from the start (at 0) and cost no label lookup. Others appear when first seen.
var expectedRequests = []hotKey{
	{kindMaster, 200}, {kindMaster, 304},
	{kindPlaylist, 200}, {kindPlaylist, 206}, {kindPlaylist, 304}, {kindPlaylist, 404},
	{kindSegment, 200}, {kindSegment, 206}, {kindSegment, 304}, {kindSegment, 404},
	{kindMetrics, 200}, {kindHealthz, 200}, {kindOther, 404},
}

type metrics struct {
	requests *prometheus.CounterVec
	hot      map[hotKey]prometheus.Counter // read-only after newMetrics
	bytes    [numKinds]prometheus.Counter
	duration [numKinds]prometheus.Observer
	inFlight prometheus.Gauge
	built    *prometheus.CounterVec
	reg      prometheus.Registerer
}

func newMetrics(labels serverkit.Labels) (*prometheus.Registry, *metrics) {
	reg, r := serverkit.NewRegistry(labels)
	m := &metrics{
		reg: r,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests, Help: "Requests served, by kind (master, playlist, segment, metrics, healthz, other) and HTTP status code.",
		}, []string{"kind", "code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricInFlight, Help: "Requests being served.",
		}),
		built: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSegmentsBuilt, Help: "Synthetic segments built (once per segment, however many viewers fetch it), by rendition.",
		}, []string{"rendition"}),
	}
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricResponseBytes, Help: "Response body bytes written, by kind.",
	}, []string{"kind"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: MetricDuration, Help: "Time to serve a request, by kind.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"kind"})
	r.MustRegister(m.requests, m.inFlight, m.built, bytes, duration)
	m.hot = map[hotKey]prometheus.Counter{}
	for _, hk := range expectedRequests {
		m.hot[hk] = m.requests.WithLabelValues(hk.kind.String(), strconv.Itoa(hk.code))
	}
	for k := range numKinds {
		m.bytes[k] = bytes.WithLabelValues(k.String())
		m.duration[k] = duration.WithLabelValues(k.String())
	}
	return reg, m
}

// observe records one finished request.
func (m *metrics) observe(k kind, code int, n int64, took time.Duration) {
	if c, ok := m.hot[hotKey{k, code}]; ok {
		c.Inc()
	} else {
		m.requests.WithLabelValues(k.String(), strconv.Itoa(code)).Inc()
	}
	if n > 0 {
		m.bytes[k].Add(float64(n))
	}
	m.duration[k].Observe(took.Seconds())
}

// registerLive adds the synthetic stream's metrics.
func (m *metrics) registerLive(ls *liveStream) {
	for _, r := range ls.renditions {
		c := m.built.WithLabelValues(r.name)
		r.onBuild = c.Inc
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricLiveEdge, Help: "Media sequence number of the newest published segment (-1 before the first).",
	}, func() float64 { return float64(ls.tl.latest(ls.clock.Now())) }))
}

// registerFFmpeg adds the ffmpeg process gauge.
func (m *metrics) registerFFmpeg(ff *ffmpegProcess) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricFFmpegUp, Help: "1 while the ffmpeg this origin started is running.",
	}, func() float64 {
		if ff.running() {
			return 1
		}
		return 0
	}))
}
