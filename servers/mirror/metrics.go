package mirror

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, all in one place. Labels: kind (playlist|segment|other), result
// (hit|miss|coalesced|stale|bypass), outcome (2xx..5xx|error), class, op, reason.
// For reports: answered from cache = requests_total{result=~"hit|stale"}; hit ratio =
// that / sum(requests_total); origin load = sum(upstream_requests_total).
const (
	metricRequests         = "stampede_mirror_requests_total"
	metricRejected         = "stampede_mirror_rejected_requests_total"
	metricSentBytes        = "stampede_mirror_sent_bytes_total"
	metricUpstreamRequests = "stampede_mirror_upstream_requests_total"
	metricUpstreamDuration = "stampede_mirror_upstream_duration_seconds"
	metricUpstreamBytes    = "stampede_mirror_upstream_received_bytes_total"
	metricUpstreamErrors   = "stampede_mirror_upstream_errors_total"
	metricCacheBytes       = "stampede_mirror_cache_bytes"
	metricCacheObjects     = "stampede_mirror_cache_objects"
	metricCacheEvictions   = "stampede_mirror_cache_evictions_total"
	metricClientConns      = "stampede_mirror_client_connections"
	metricOpenFDs          = "stampede_mirror_open_fds"
	metricMaxFDs           = "stampede_mirror_max_fds"
	metricEMFILE           = "stampede_mirror_emfile_total"
	metricShed             = "stampede_mirror_shed_total"
	metricQueued           = "stampede_mirror_queued_connections"
)

// Upstream error classes (the `class` label of upstream_errors_total).
const (
	classTimeout   = "timeout"   // no answer, or a body that paused, past UpstreamTimeout
	classRefused   = "refused"   // the upstream is down
	classEMFILE    = "emfile"    // this process ran out of file descriptors dialing
	classTruncated = "truncated" // the body ended before its Content-Length, or the connection broke
	classTooLarge  = "too_large" // a body without Content-Length grew past MaxObjectSize
	classMalformed = "malformed" // not an HTTP response
	classStatus5xx = "status_5xx"
	classPanic     = "panic"
	classOther     = "other"
)

// EMFILE ops (the `op` label), shed reasons (the `reason` label), and the outcome of an
// upstream request that got no response.
const (
	opAccept     = "accept"
	opDial       = "dial"
	shedMaxConns = "max_conns"
	shedEMFILE   = "emfile"
	shedIdle     = "idle" // an idle keep-alive connection closed to win back a descriptor
	outcomeError = "error"
)

// metrics are the mirror's instruments; per-request ones are resolved up front so the
// hit path only does atomic adds.
type metrics struct {
	requests         [numKinds][numResults]prometheus.Counter
	rejected         *prometheus.CounterVec
	sentBytes        [numKinds]prometheus.Counter
	upstreamRequests *prometheus.CounterVec
	upstreamDuration [numKinds]prometheus.Observer
	upstreamBytes    [numKinds]prometheus.Counter
	upstreamErrors   *prometheus.CounterVec
	evictions        prometheus.Counter
	clientConns      prometheus.Gauge
	emfile           *prometheus.CounterVec
	shed             *prometheus.CounterVec
	queued           prometheus.Gauge
}

// newMetrics registers the instruments. cacheStats and fds are read at scrape time.
func newMetrics(r prometheus.Registerer, cacheStats func() (bytes int64, objects int), fds *fdCounter) *metrics {
	m := &metrics{}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricRequests,
		Help: "Proxied requests by kind and cache result (hit, miss, coalesced, stale, bypass).",
	}, []string{"kind", "result"})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricSentBytes, Help: "Response body bytes written to clients, by kind.",
	}, []string{"kind"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricUpstreamDuration,
		Help:    "Time from sending an upstream request to the end of its body (or its failure).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"kind"})
	upBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricUpstreamBytes, Help: "Body bytes received from the upstream, by kind.",
	}, []string{"kind"})
	for k := range numKinds {
		for res := range numResults {
			m.requests[k][res] = requests.WithLabelValues(kindNames[k], resultNames[res])
		}
		m.sentBytes[k] = sent.WithLabelValues(kindNames[k])
		m.upstreamDuration[k] = duration.WithLabelValues(kindNames[k])
		m.upstreamBytes[k] = upBytes.WithLabelValues(kindNames[k])
	}
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricRejected, Help: "Requests refused before the cache: method, not_proxy (open-proxy attempt), path.",
	}, []string{"reason"})
	m.upstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricUpstreamRequests, Help: "Upstream requests by kind and outcome (status class, or error when no response).",
	}, []string{"kind", "outcome"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricUpstreamErrors, Help: "Failed upstream fetches by kind and class.",
	}, []string{"kind", "class"})
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: metricCacheEvictions, Help: "Objects evicted to keep the cache within its size.",
	})
	m.clientConns = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricClientConns, Help: "Open client connections (Serve only).",
	})
	m.emfile = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricEMFILE, Help: "Times the process ran out of file descriptors, by op (accept, dial).",
	}, []string{"op"})
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricShed, Help: "Connections shed, by reason: answered 503 and closed (max_conns, emfile), or an idle keep-alive connection closed to win back a descriptor (idle).",
	}, []string{"reason"})
	m.queued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricQueued, Help: "1 while Serve holds back accepting because MaxConns are open (Overload=queue); the clients wait in the listen backlog.",
	})
	cacheBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricCacheBytes, Help: "Bytes held by the cache.",
	}, func() float64 { b, _ := cacheStats(); return float64(b) })
	cacheObjects := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricCacheObjects, Help: "Objects held by the cache.",
	}, func() float64 { _, n := cacheStats(); return float64(n) })
	openFDs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricOpenFDs, Help: "Open file descriptors of this process (last known value while none are free).",
	}, fds.open)
	maxFDs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricMaxFDs, Help: "This process's open-files limit (soft RLIMIT_NOFILE).",
	}, maxOpenFiles)
	for _, op := range []string{opAccept, opDial} {
		m.emfile.WithLabelValues(op)
	}
	for _, reason := range []string{shedMaxConns, shedEMFILE, shedIdle} {
		m.shed.WithLabelValues(reason)
	}
	r.MustRegister(requests, sent, duration, upBytes, m.rejected, m.upstreamRequests, m.upstreamErrors,
		m.evictions, m.clientConns, m.emfile, m.shed, m.queued, cacheBytes, cacheObjects, openFDs, maxFDs)
	return m
}
