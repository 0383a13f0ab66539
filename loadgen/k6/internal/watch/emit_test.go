package watch

import (
	"context"
	"errors"
	"reflect"
	"syscall"
	"testing"
	"time"

	"go.k6.io/k6/metrics"

	"github.com/stampede-live/stampede/loadgen"
	"github.com/stampede-live/stampede/loadgen/report"
)

// sampleOf is what a test checks of one sample.
type sampleOf struct {
	metric string
	value  float64
	tags   map[string]string
}

func newTestEmitter(t *testing.T, ctx context.Context) (*Emitter, chan metrics.SampleContainer) {
	t.Helper()
	reg := metrics.NewRegistry()
	m, err := RegisterMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan metrics.SampleContainer, 16)
	tags := reg.RootTagSet().With("scenario", "baseline")
	return NewEmitter(ctx, out, m, tags, map[string]string{"trace": "x"}), out
}

// drain returns what was pushed, one entry per sample.
func drain(out chan metrics.SampleContainer) []sampleOf {
	var got []sampleOf
	for {
		select {
		case c := <-out:
			for _, s := range c.GetSamples() {
				got = append(got, sampleOf{s.Metric.Name, s.Value, s.Tags.Map()})
			}
		default:
			return got
		}
	}
}

func TestObserveMapsMeasurementsToSamples(t *testing.T) {
	t.Parallel()
	const mirror = "127.0.0.1:8081"
	base := map[string]string{"scenario": "baseline"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"scenario": "baseline"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		in   loadgen.Measurement
		want []sampleOf
	}{
		{"a segment: its duration in ms, tagged with the mirror",
			loadgen.Measurement{What: loadgen.MeasureRequest, Kind: loadgen.KindSegment, Mirror: mirror, Status: 200, Duration: 250 * time.Millisecond},
			[]sampleOf{{MetricSegment, 250, with("mirror", mirror)}}},
		{"a playlist",
			loadgen.Measurement{What: loadgen.MeasureRequest, Kind: loadgen.KindPlaylist, Mirror: mirror, Status: 200, Duration: 1500 * time.Microsecond},
			[]sampleOf{{MetricPlaylist, 1.5, with("mirror", mirror)}}},
		{"a 503 segment: timed (it was answered) and an error",
			loadgen.Measurement{What: loadgen.MeasureRequest, Kind: loadgen.KindSegment, Mirror: mirror, Status: 503, Class: report.ClassHTTP5xx, Duration: 2 * time.Millisecond},
			[]sampleOf{{MetricSegment, 2, with("mirror", mirror)}, {MetricErrors, 1, with("kind", "segment", "class", report.ClassHTTP5xx, "mirror", mirror)}}},
		{"a refused ping: an error only (no answer, no duration)",
			loadgen.Measurement{What: loadgen.MeasureRequest, Kind: loadgen.KindPing, Mirror: mirror, Class: report.ClassRefused, Err: syscall.ECONNREFUSED},
			[]sampleOf{{MetricErrors, 1, with("kind", "ping", "class", report.ClassRefused, "mirror", mirror)}}},
		{"a failed heartbeat has no mirror tag",
			loadgen.Measurement{What: loadgen.MeasureRequest, Kind: loadgen.KindHeartbeat, Class: report.ClassTimeout, Err: errors.New("timeout")},
			[]sampleOf{{MetricErrors, 1, with("kind", "heartbeat", "class", report.ClassTimeout)}}},
		{"a good heartbeat is not a playlist or segment: nothing",
			loadgen.Measurement{What: loadgen.MeasureRequest, Kind: loadgen.KindHeartbeat, Status: 200, Duration: time.Millisecond},
			nil},
		{"a request cut short by the session's end: neither timed nor an error",
			loadgen.Measurement{What: loadgen.MeasureRequest, Kind: loadgen.KindSegment, Mirror: mirror, Status: 200, Aborted: true, Err: errors.New("closed")},
			nil},
		{"start-up",
			loadgen.Measurement{What: loadgen.MeasureStartup, Duration: 1200 * time.Millisecond},
			[]sampleOf{{MetricStartup, 1200, base}}},
		{"a stall begins: counted",
			loadgen.Measurement{What: loadgen.MeasureStallBegan},
			[]sampleOf{{MetricStalls, 1, base}}},
		{"a stall ends with a segment: its length",
			loadgen.Measurement{What: loadgen.MeasureStallEnded, Duration: 3 * time.Second, Complete: true},
			[]sampleOf{{MetricStallDuration, 3000, base}}},
		{"a stall cut off by the session's end: no length",
			loadgen.Measurement{What: loadgen.MeasureStallEnded, Duration: 3 * time.Second},
			nil},
		{"live latency",
			loadgen.Measurement{What: loadgen.MeasureLiveLatency, Duration: 6500 * time.Millisecond},
			[]sampleOf{{MetricLiveLatency, 6500, base}}},
		{"a session's end: its rebuffer ratio",
			loadgen.Measurement{What: loadgen.MeasureSessionEnd, Played: 57 * time.Second, StallTime: 3 * time.Second},
			[]sampleOf{{MetricRebufferRatio, 0.05, base}}},
		{"a session that never played has no ratio",
			loadgen.Measurement{What: loadgen.MeasureSessionEnd, Reason: loadgen.SessionFatal},
			nil},
		{"a counter answer is not a k6 metric",
			loadgen.Measurement{What: loadgen.MeasureCounter, Viewers: 10},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, out := newTestEmitter(t, context.Background())
			e.Observe(tc.in)
			if got := drain(out); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("samples %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestJoinedGivesStallsAZero(t *testing.T) {
	t.Parallel()
	e, out := newTestEmitter(t, context.Background())
	at := time.Unix(1000, 0)
	e.Joined(at)
	c := <-out
	s := c.GetSamples()
	if len(s) != 1 || s[0].Metric.Name != MetricStalls || s[0].Value != 0 || !s[0].Time.Equal(at) || s[0].Metadata["trace"] != "x" {
		t.Fatalf("samples %+v: want one hls_stalls 0 at %v with the VU's metadata", s, at)
	}
}

// TestNothingIsPushedAfterTheContextEnds: k6 ends a VU's context when the test ends;
// samples after that are dropped, never block.
func TestNothingIsPushedAfterTheContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	e, out := newTestEmitter(t, ctx)
	cancel()
	for i := 0; i < 100; i++ { // more than the channel holds: a push would block
		e.Observe(loadgen.Measurement{What: loadgen.MeasureStallBegan})
	}
	if got := drain(out); len(got) != 0 {
		t.Fatalf("%d samples pushed after the context ended", len(got))
	}
}

func TestMetricTypes(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	if _, err := RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// A second VU registers again and gets the same metrics.
	if _, err := RegisterMetrics(reg); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	for name, want := range map[string]string{
		MetricStartup: "trend/time", MetricSegment: "trend/time", MetricPlaylist: "trend/time",
		MetricStalls: "counter/default", MetricStallDuration: "trend/time", MetricRebufferRatio: "trend/default",
		MetricLiveLatency: "trend/time", MetricErrors: "counter/default",
	} {
		m := reg.Get(name)
		if m == nil {
			t.Fatalf("%s not registered", name)
		}
		if got := m.Type.String() + "/" + m.Contains.String(); got != want {
			t.Errorf("%s is %s, want %s", name, got, want)
		}
	}
	// Another extension that took one of the names with another type is an error.
	other := metrics.NewRegistry()
	other.MustNewMetric(MetricStalls, metrics.Trend)
	if _, err := RegisterMetrics(other); err == nil {
		t.Fatal("registering over a conflicting metric succeeded")
	}
}
