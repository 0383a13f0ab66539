package origin

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/internal/testbin"
)

func TestMain(m *testing.M) {
	if os.Getenv(barePeerEnv) != "" {
		runBarePeer()
		return
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// testEpoch is a fixed stream start for tests that compare exact output.
var testEpoch = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestServer builds a server, failing the test on error, and closes it at cleanup.
func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeServer is a synthetic origin on a fake clock that starts at testEpoch.
func fakeServer(t testing.TB, cfg Config) (*Server, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(testEpoch)
	cfg.Clock = fc
	if cfg.Epoch.IsZero() {
		cfg.Epoch = testEpoch
	}
	return newTestServer(t, cfg), fc
}

// get sends one request through the handler; hdr is name, value pairs.
func get(h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://origin.test/", nil)
	if u, err := url.ParseRequestURI(path); err == nil {
		r.URL.Path, r.URL.RawQuery = u.Path, u.RawQuery
	} else {
		r.URL.Path = path // what no client library would send, as a raw client might
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// steppingClock is a clock tests can move backwards (clock.Fake refuses to), to show
// the live edge never does.
type steppingClock struct {
	mu  sync.Mutex // protects now
	now time.Time
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *steppingClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *steppingClock) NewTimer(d time.Duration) clock.Timer { return clock.Real.NewTimer(d) }

var _ clock.Clock = (*steppingClock)(nil)

// scaledClock runs factor times faster than the wall clock, from start: the live stream
// advances factor segments per segment duration of real time, so a real player reads
// many seconds of media in a fraction of the time.
type scaledClock struct {
	wallStart time.Time
	start     time.Time
	factor    float64
}

func (c scaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.wallStart)) * c.factor))
}

func (c scaledClock) NewTimer(d time.Duration) clock.Timer {
	return clock.Real.NewTimer(time.Duration(float64(d) / c.factor))
}

var _ clock.Clock = scaledClock{}

// counterValue sums the samples of a metric whose labels include the given name, value
// pairs: counter and gauge values, histogram sample counts. It fails when nothing matches.
func counterValue(t testing.TB, s *Server, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						ok = true
					}
				}
				if !ok {
					continue metric
				}
			}
			found = true
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	if !found {
		t.Fatalf("no metric %s%v", name, labels)
	}
	return sum
}
