package loadgen

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stampede-live/stampede/loadgen/report"
)

// TestEveryMetricMoves drives each recorder entry point once and checks that every
// metric named in metrics.go is exported and moved (a counter or gauge above zero, a
// histogram with an observation).
func TestEveryMetricMoves(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := NewRecorder(reg, []string{"m1", "m2"})
	ep := &endpoint{name: "m1"}
	r.m.target.Set(10)
	r.sessionStarted()
	r.sessionStarted() // one stays active
	r.request(&request{kind: KindSegment, ep: ep}, 1, &response{code: 200, ttfb: time.Millisecond, total: 2 * time.Millisecond, bytes: 100, sent: true}, false)
	r.request(&request{kind: KindPlaylist, ep: ep}, 0, &response{err: errors.New("boom: " + errTimeout.Error()), sent: true}, false)
	r.request(&request{kind: KindPlaylist, ep: ep}, 0, &response{code: 503, sent: true}, false)
	r.stallBegan()
	r.stallBegan()
	r.stallEnded(time.Second, true)
	r.playedFor(3 * time.Second)
	r.startupTook(time.Second)
	r.liveLatency(7 * time.Second)
	r.mirrorSwitched()
	r.levelSwitched(true)
	r.levelSwitched(false)
	r.counterAnswered(1)
	r.lag(time.Millisecond)
	r.m.bound.Set(1)
	r.sessionEnded(sessionStats{reason: reasonChurn})

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	moved := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if value(m) > 0 {
				moved[f.GetName()] = true
			}
		}
	}
	for _, name := range []string{
		metricActive, metricTarget, metricSessions, metricRequests, metricRequestDuration,
		metricTTFB, metricBytes, metricErrors, metricStalls, metricStalled, metricStallDuration,
		metricPlayed, metricStartup, metricLiveLatency, metricMirrorSwitches, metricLevelSwitches,
		metricCounterAnswer, metricLag, metricBound,
	} {
		if !moved[name] {
			t.Errorf("%s did not move", name)
		}
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestResultMarksGeneratorBound(t *testing.T) {
	ep := &endpoint{name: "m"}
	for _, tc := range []struct {
		name  string
		drive func(r *Recorder)
		gen   report.Generator
		bound bool
	}{
		{"healthy", func(r *Recorder) {}, report.Generator{LagP99Ms: 5}, false},
		{"timer lag over the limit", func(r *Recorder) {}, report.Generator{LagP99Ms: 150, Bound: true}, true},
		{"out of descriptors in the generator", func(r *Recorder) {
			r.request(&request{kind: KindSegment, ep: ep}, 0, &response{err: &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)}}, false)
		}, report.Generator{LagP99Ms: 5}, true},
	} {
		r := NewRecorder(nil, nil)
		tc.drive(r)
		res := r.result(time.Unix(0, 0), time.Unix(10, 0), 1, tc.gen, false, 100*time.Millisecond)
		if f := res.Figures; f.Generator.Bound != tc.bound || f.Pass == tc.bound || (tc.bound && len(f.Notes) == 0) {
			t.Errorf("%s: bound %v pass %v notes %q", tc.name, f.Generator.Bound, f.Pass, f.Notes)
		}
	}
}
