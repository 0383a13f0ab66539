package watch

import (
	"context"
	"time"

	"go.k6.io/k6/metrics"

	"github.com/stampede-live/stampede/loadgen"
)

// Emitter turns one session's measurements into k6 samples on the VU's sample channel.
// Observe runs on the viewer's timer goroutines, concurrently: every field is set before
// the session starts and only read after.
type Emitter struct {
	ctx  context.Context
	out  chan<- metrics.SampleContainer
	m    *Metrics
	tags *metrics.TagSet   // the VU's tags when watch() was called, plus the script's
	meta map[string]string // the VU's metadata then (read-only from here on)
}

// NewEmitter sends samples of m, tagged tags and carrying meta (which it must own), to
// out until ctx ends (then they are dropped, as k6's own modules do).
func NewEmitter(ctx context.Context, out chan<- metrics.SampleContainer, m *Metrics, tags *metrics.TagSet, meta map[string]string) *Emitter {
	return &Emitter{ctx: ctx, out: out, m: m, tags: tags, meta: meta}
}

// sample builds one sample of metric with the session's tags (and extra tag pairs).
func (e *Emitter) sample(metric *metrics.Metric, at time.Time, v float64, kv ...string) metrics.Sample {
	tags := e.tags
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			tags = tags.With(kv[i], kv[i+1])
		}
	}
	return metrics.Sample{
		TimeSeries: metrics.TimeSeries{Metric: metric, Tags: tags},
		Time:       at, Value: v, Metadata: e.meta,
	}
}

func (e *Emitter) push(s ...metrics.Sample) {
	if len(s) > 0 {
		metrics.PushIfNotDone(e.ctx, e.out, metrics.Samples(s))
	}
}

// Joined marks the session's start: hls_stalls gets a 0, so that a run without stalls
// still has the metric.
func (e *Emitter) Joined(at time.Time) {
	e.push(e.sample(e.m.stalls, at, 0))
}

// Observe is loadgen.WatchConfig.Observe.
func (e *Emitter) Observe(m loadgen.Measurement) {
	switch m.What {
	case loadgen.MeasureRequest:
		var out [2]metrics.Sample
		n := 0
		// Only answered requests have a duration (as in stampede's own recorder); a
		// request cut short by the session's end is neither timed nor an error.
		if m.Status != 0 && !m.Aborted {
			switch m.Kind {
			case loadgen.KindSegment:
				out[n] = e.sample(e.m.segment, m.At, metrics.D(m.Duration), "mirror", m.Mirror)
				n++
			case loadgen.KindPlaylist:
				out[n] = e.sample(e.m.playlist, m.At, metrics.D(m.Duration), "mirror", m.Mirror)
				n++
			}
		}
		if m.Class != "" {
			out[n] = e.sample(e.m.errors, m.At, 1, "kind", m.Kind.String(), "class", m.Class, "mirror", m.Mirror)
			n++
		}
		e.push(out[:n]...)
	case loadgen.MeasureStartup:
		e.push(e.sample(e.m.startup, m.At, metrics.D(m.Duration)))
	case loadgen.MeasureStallBegan:
		e.push(e.sample(e.m.stalls, m.At, 1))
	case loadgen.MeasureStallEnded:
		if m.Complete { // a stall cut off by the session's end has no true length
			e.push(e.sample(e.m.stallDuration, m.At, metrics.D(m.Duration)))
		}
	case loadgen.MeasureLiveLatency:
		e.push(e.sample(e.m.liveLatency, m.At, metrics.D(m.Duration)))
	case loadgen.MeasureSessionEnd:
		if watched := m.Played + m.StallTime; watched > 0 {
			e.push(e.sample(e.m.rebuffer, m.At, m.StallTime.Seconds()/watched.Seconds()))
		}
	}
}
