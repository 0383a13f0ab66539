// Package watch is the k6-facing side of one watch() call that needs no JavaScript
// runtime: reading the script's options into a loadgen.WatchConfig, the hls_* metrics,
// and turning a session's measurements into k6 samples. The extension's root package
// only wires these to the VU.
package watch

import (
	"go.k6.io/k6/metrics"
)

// Metric names, all in one place. Tags are bounded: mirror (one of the configured
// mirrors), kind (playlist, segment, heartbeat, ping), class (report's error classes) —
// never a URL. k6 adds the VU's own tags (scenario, and any --tag).
const (
	// MetricStartup: join to first frame, one sample per session that started to play.
	MetricStartup = "hls_startup_duration"
	// MetricSegment: segment load time, start to last byte, tagged mirror.
	MetricSegment = "hls_segment_duration"
	// MetricPlaylist: playlist load time (multivariant and media), tagged mirror.
	MetricPlaylist = "hls_playlist_duration"
	// MetricStalls: stalls begun; each session adds 0 when it joins, so the metric exists
	// (and a `count==0` threshold has data) in a run without stalls.
	MetricStalls = "hls_stalls"
	// MetricStallDuration: length of each stall that ended with a segment landing.
	MetricStallDuration = "hls_stall_duration"
	// MetricRebufferRatio: stalled / (played + stalled) of each session, at its end.
	MetricRebufferRatio = "hls_rebuffer_ratio"
	// MetricLiveLatency: wall clock minus the playhead's program date-time, at each
	// segment landing.
	MetricLiveLatency = "hls_live_latency"
	// MetricErrors: failed requests, tagged kind, class and mirror (no mirror for
	// heartbeats, which go to the counter).
	MetricErrors = "hls_errors"
)

// Metrics are the extension's k6 metrics, registered once per test run (every VU's
// registration returns the same *metrics.Metric).
type Metrics struct {
	startup, segment, playlist, stalls, stallDuration, rebuffer, liveLatency, errors *metrics.Metric
}

// RegisterMetrics registers the metrics in k6's registry, or finds them there.
func RegisterMetrics(reg *metrics.Registry) (*Metrics, error) {
	m := &Metrics{}
	for _, d := range []struct {
		dst  **metrics.Metric
		name string
		typ  metrics.MetricType
		vt   metrics.ValueType
	}{
		{&m.startup, MetricStartup, metrics.Trend, metrics.Time},
		{&m.segment, MetricSegment, metrics.Trend, metrics.Time},
		{&m.playlist, MetricPlaylist, metrics.Trend, metrics.Time},
		{&m.stalls, MetricStalls, metrics.Counter, metrics.Default},
		{&m.stallDuration, MetricStallDuration, metrics.Trend, metrics.Time},
		{&m.rebuffer, MetricRebufferRatio, metrics.Trend, metrics.Default},
		{&m.liveLatency, MetricLiveLatency, metrics.Trend, metrics.Time},
		{&m.errors, MetricErrors, metrics.Counter, metrics.Default},
	} {
		metric, err := reg.NewMetric(d.name, d.typ, d.vt)
		if err != nil {
			return nil, err
		}
		*d.dst = metric
	}
	return m, nil
}
