package loadgen

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, all in one place (STYLE.md). Labels are bounded: kind, mirror (one per
// configured mirror), code class, error class, direction, reason — never a URL or a viewer.
const (
	metricActive          = "stampede_viewers_active"
	metricTarget          = "stampede_viewers_target"
	metricSessions        = "stampede_viewers_sessions_total"
	metricRequests        = "stampede_viewers_requests_total"
	metricRequestDuration = "stampede_viewers_request_duration_seconds"
	metricTTFB            = "stampede_viewers_ttfb_seconds"
	metricBytes           = "stampede_viewers_received_bytes_total"
	metricErrors          = "stampede_viewers_errors_total"
	metricStalls          = "stampede_viewers_stalls_total"
	metricStalled         = "stampede_viewers_stalled"
	metricStallDuration   = "stampede_viewers_stall_duration_seconds"
	metricPlayed          = "stampede_viewers_played_seconds_total"
	metricStartup         = "stampede_viewers_startup_seconds"
	metricLiveLatency     = "stampede_viewers_live_latency_seconds"
	metricMirrorSwitches  = "stampede_viewers_mirror_switches_total"
	metricLevelSwitches   = "stampede_viewers_rendition_switches_total"
	metricCounterAnswer   = "stampede_viewers_counter_reported_viewers"
	metricLag             = "stampede_viewers_generator_lag_seconds"
	metricBound           = "stampede_viewers_generator_bound"
)

// metrics are the Prometheus side of a Recorder. Label children are resolved once, so
// recording a request costs a few atomic adds and no map lookups.
type metrics struct {
	active, target, stalled, counterAnswer, bound prometheus.Gauge

	sessions     *prometheus.CounterVec // reason
	requests     [numKinds][4]prometheus.Counter
	duration     [numKinds][]prometheus.Observer // [kind][mirror]
	ttfb         [numKinds][]prometheus.Observer
	bytes        [numKinds]prometheus.Counter
	errors       [numKinds][numClasses]prometheus.Counter
	stalls       prometheus.Counter
	stallSecs    prometheus.Observer
	played       prometheus.Counter
	startup      prometheus.Observer
	liveLatency  prometheus.Observer
	mirrorSwitch prometheus.Counter
	levelUp      prometheus.Counter
	levelDown    prometheus.Counter
	lag          prometheus.Observer
}

// codeClasses label requests_total's code: 2xx, 3xx/other statuses, 4xx or 5xx, and
// "error" for requests that got no HTTP answer.
var codeClasses = [4]string{"2xx", "4xx", "5xx", "error"}

func codeClassIndex(code int, err error) int {
	switch {
	case err != nil && code == 0:
		return 3
	case code >= 500:
		return 2
	case code >= 400:
		return 1
	case code >= 200 && code < 300:
		return 0
	}
	return 3
}

func newMetrics(reg prometheus.Registerer, mirrors []string) *metrics {
	m := &metrics{}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		reg.MustRegister(g)
		return g
	}
	m.active = gauge(metricActive, "Viewers in a session now (joined and not yet left).")
	m.target = gauge(metricTarget, "Viewers the arrival schedule aims for.")
	m.stalled = gauge(metricStalled, "Viewers whose playback is stalled now.")
	m.counterAnswer = gauge(metricCounterAnswer, "The viewer counter's latest answer.")
	m.bound = gauge(metricBound, "1 when the generator's timer lag p99 passed its limit: the run is invalid.")

	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricSessions,
		Help: "Viewer sessions ended, by reason (churn, end, fatal, stopped)."}, []string{"reason"})
	reg.MustRegister(m.sessions)

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRequests,
		Help: "Requests completed, by kind and status class (error: no HTTP answer)."}, []string{"kind", "code"})
	latencyBuckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricRequestDuration,
		Help: "Request duration from start to last body byte.", Buckets: latencyBuckets}, []string{"kind", "mirror"})
	ttfb := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricTTFB,
		Help: "Time from request start to the first response byte.", Buckets: latencyBuckets}, []string{"kind", "mirror"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricBytes,
		Help: "Response body bytes received (and discarded for segments)."}, []string{"kind"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricErrors,
		Help: "Failed requests by kind and error class."}, []string{"kind", "class"})
	reg.MustRegister(requests, duration, ttfb, bytes, errs)
	for k := Kind(0); k < numKinds; k++ {
		for i, c := range codeClasses {
			m.requests[k][i] = requests.WithLabelValues(k.String(), c)
		}
		for _, name := range mirrors {
			m.duration[k] = append(m.duration[k], duration.WithLabelValues(k.String(), name))
			m.ttfb[k] = append(m.ttfb[k], ttfb.WithLabelValues(k.String(), name))
		}
		m.bytes[k] = bytes.WithLabelValues(k.String())
		for c := classIndex(0); c < numClasses; c++ {
			m.errors[k][c] = errs.WithLabelValues(k.String(), errorClasses[c])
		}
	}

	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Observer {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
		reg.MustRegister(h)
		return h
	}
	m.stalls = counter(metricStalls, "Stalls begun (the playback buffer ran dry).")
	m.stallSecs = histogram(metricStallDuration, "Length of each ended stall.", []float64{.1, .25, .5, 1, 2, 4, 8, 16, 32, 64})
	m.played = counter(metricPlayed, "Media seconds played (the playhead advancing).")
	m.startup = histogram(metricStartup, "Join to first playable segment.", []float64{.05, .1, .25, .5, 1, 2, 4, 8, 16, 32})
	m.liveLatency = histogram(metricLiveLatency, "Wall clock minus the playhead's program date-time.", []float64{1, 2, 4, 6, 8, 10, 15, 20, 30, 60, 120})
	m.mirrorSwitch = counter(metricMirrorSwitches, "Viewers moving to another mirror after repeated errors.")
	levels := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricLevelSwitches,
		Help: "ABR rendition switches by direction."}, []string{"direction"})
	reg.MustRegister(levels)
	m.levelUp = levels.WithLabelValues("up")
	m.levelDown = levels.WithLabelValues("down")
	m.lag = histogram(metricLag, "How late the generator's timers fired (scheduled vs actual).", []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1})
	return m
}
