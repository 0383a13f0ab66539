package counter

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Every metric name the counter exports lives here, so dashboards and docs have one
// place to look. Labels are bounded: `result` has four values, `store` five.
const (
	// MetricViewers is a gauge: viewers tracked now (the figure /api/viewers serves).
	MetricViewers = "stampede_counter_viewers"
	// MetricMaxViewers is a gauge: the cap on tracked viewers (0: none).
	MetricMaxViewers = "stampede_counter_max_viewers"
	// MetricHeartbeats counts heartbeats by result: new, refresh, overflow (a new viewer
	// refused because the cap is full — the overflow figure) and invalid (a request
	// answered 400, e.g. a malformed ?id=).
	MetricHeartbeats = "stampede_counter_heartbeats_total"
	// MetricSweepDuration is a histogram of how long one sweep held the store.
	MetricSweepDuration = "stampede_counter_sweep_duration_seconds"
	// MetricEvictions counts viewers removed by sweeps for being silent past --expire.
	MetricEvictions = "stampede_counter_evictions_total"
	// MetricInfo is 1, labelled with the store in use, so a dashboard can tell runs apart.
	MetricInfo = "stampede_counter_info"
)

// resultInvalid is the `result` label of a request answered 400.
const resultInvalid = "invalid"

type metrics struct {
	heartbeats    [Overflow + 1]prometheus.Counter // indexed by Result
	invalid       prometheus.Counter
	sweepDuration prometheus.Histogram
	evictions     prometheus.Counter
}

func newMetrics(r prometheus.Registerer, store Store, storeName string, maxViewers int) *metrics {
	hb := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricHeartbeats,
		Help: "Heartbeats received, by result: new, refresh, overflow (new viewer refused at the cap), invalid (400).",
	}, []string{"result"})
	m := &metrics{
		invalid: hb.WithLabelValues(resultInvalid),
		sweepDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricSweepDuration,
			Help: "Time one sweep spent scanning the store for silent viewers.",
			// 10 µs to ~2.6 s: an empty store up to millions of viewers behind one lock.
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricEvictions,
			Help: "Viewers removed by sweeps for being silent longer than the expiry.",
		}),
	}
	for _, res := range []Result{Refreshed, Added, Overflow} {
		m.heartbeats[res] = hb.WithLabelValues(res.String())
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricInfo,
		Help: "Always 1; the store label names the store in use.",
	}, []string{"store"})
	info.WithLabelValues(storeName).Set(1)
	r.MustRegister(hb, m.sweepDuration, m.evictions, info,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricViewers,
			Help: "Viewers tracked now: heard from within the expiry, or not yet swept.",
		}, func() float64 { return float64(store.Count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricMaxViewers,
			Help: "The cap on tracked viewers; 0 means none.",
		}, func() float64 { return float64(maxViewers) }),
	)
	return m
}
