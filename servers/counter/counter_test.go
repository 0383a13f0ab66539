package counter

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stampede-live/stampede/internal/clock"
)

const waitLong = 10 * time.Second // generous: the machine is shared

func newTestServer(t *testing.T, cfg Config) (*Server, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(t0)
	cfg.Clock = fc
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !fc.WaitTimers(1, waitLong) {
		t.Fatal("sweeper never armed its timer")
	}
	return s, fc
}

// get sends GET /api/viewers from remote (host:port) with an optional query and headers.
func get(t *testing.T, s *Server, remote, query string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/api/viewers"+query, nil)
	r.RemoteAddr = remote
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// viewers sends a heartbeat and returns the count it answers.
func viewers(t *testing.T, s *Server, remote string) int {
	t.Helper()
	w := get(t, s, remote, "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET from %s: %d %s", remote, w.Code, w.Body)
	}
	var body struct{ Viewers int }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	return body.Viewers
}

// advanceSweep moves the fake clock by d, which must make the sweeper's timer fire, and
// waits until the sweep has finished (the sweeper re-arms its timer after sweeping).
func advanceSweep(t *testing.T, fc *clock.Fake, d time.Duration) {
	t.Helper()
	fc.Advance(d)
	if !fc.WaitTimers(1, waitLong) {
		t.Fatal("sweeper did not re-arm after a sweep")
	}
}

func TestViewersResponse(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	w := get(t, s, "192.0.2.1:1234", "", nil)
	if w.Code != 200 || w.Body.String() != "{\"viewers\":1}\n" {
		t.Fatalf("got %d %q", w.Code, w.Body)
	}
	for k, want := range map[string]string{
		"Content-Type":                "application/json",
		"Cache-Control":               "no-store",
		"Access-Control-Allow-Origin": "*",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// A CORS preflight answers without recording anyone.
	r := httptest.NewRequest(http.MethodOptions, "/api/viewers", nil)
	r.Header.Set("Access-Control-Request-Headers", "x-tab")
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusNoContent || !strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "GET") ||
		w.Header().Get("Access-Control-Allow-Headers") != "x-tab" || w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %d %v", w.Code, w.Header())
	}

	// Other methods: 405 with Allow.
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/viewers", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") == "" {
		t.Errorf("POST: %d %v", w.Code, w.Header())
	}

	// A bad id: 400 with a JSON error that says what is wanted; not recorded.
	w = get(t, s, "192.0.2.2:1", "?id=has%20space", nil)
	var e struct{ Error string }
	if w.Code != 400 || json.Unmarshal(w.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, "id:") {
		t.Errorf("bad id: %d %q", w.Code, w.Body)
	}
	if n := s.Store().Count(); n != 1 {
		t.Errorf("count %d after a preflight, a POST and a bad id; want 1", n)
	}

	// healthz and metrics are served.
	for _, path := range []string{"/healthz", "/metrics"} {
		w = httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != 200 {
			t.Errorf("%s: %d", path, w.Code)
		}
	}
}

// TestExpiryExact: with --expire 10s --sweep 5s, a viewer last seen at t is dropped by
// the sweep at exactly t+10s, and one seen a nanosecond later survives that sweep.
func TestExpiryExact(t *testing.T) {
	s, fc := newTestServer(t, Config{Store: StoreMutex, Expire: 10 * time.Second, Sweep: 5 * time.Second})
	viewers(t, s, "192.0.2.1:1") // A at t0
	fc.Advance(time.Nanosecond)
	if n := viewers(t, s, "192.0.2.2:1"); n != 2 { // B at t0+1ns
		t.Fatalf("count %d, want 2", n)
	}
	advanceSweep(t, fc, 5*time.Second-time.Nanosecond) // sweep at t0+5s: cutoff t0-5s
	if n := s.Store().Count(); n != 2 {
		t.Fatalf("after the 5 s sweep: %d, want 2", n)
	}
	advanceSweep(t, fc, 5*time.Second) // sweep at t0+10s: cutoff t0, A is exactly 10 s silent
	if n := s.Store().Count(); n != 1 {
		t.Fatalf("after the 10 s sweep: %d, want 1 (A expired at exactly 10 s, B is 1 ns younger)", n)
	}
	advanceSweep(t, fc, 5*time.Second)
	if n := s.Store().Count(); n != 0 {
		t.Fatalf("after the 15 s sweep: %d, want 0", n)
	}
	if got := metricValue(t, s, MetricEvictions, nil); got != 2 {
		t.Errorf("%s = %v, want 2", MetricEvictions, got)
	}
}

// TestSweepCadence: the sweeper runs once per --sweep, never before.
func TestSweepCadence(t *testing.T) {
	s, fc := newTestServer(t, Config{Sweep: 3 * time.Second})
	fc.Advance(3*time.Second - time.Nanosecond)
	if fc.Timers() != 1 || sweeps(t, s) != 0 {
		t.Fatalf("swept %v times before the interval", sweeps(t, s))
	}
	fc.Advance(time.Nanosecond)
	if !fc.WaitTimers(1, waitLong) {
		t.Fatal("no re-arm after the first sweep")
	}
	for i := 2; i <= 5; i++ {
		advanceSweep(t, fc, 3*time.Second)
	}
	if got := sweeps(t, s); got != 5 {
		t.Fatalf("%v sweeps in 15 s at a 3 s cadence, want 5", got)
	}
	s.Close()
	if fc.Timers() != 0 {
		t.Fatalf("Close left %d timers armed", fc.Timers())
	}
	if err := s.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
}

func sweeps(t *testing.T, s *Server) float64 {
	t.Helper()
	return metricValue(t, s, MetricSweepDuration, nil)
}

// TestCountAfterChurn: viewers join and leave over a minute of fake time; after every
// sweep the served count is the number heard from within the expiry.
func TestCountAfterChurn(t *testing.T) {
	for _, store := range lockedStores() {
		t.Run(store, func(t *testing.T) {
			s, fc := newTestServer(t, Config{Store: store, Expire: 10 * time.Second, Sweep: 5 * time.Second})
			lastSeen := map[int]time.Time{}
			for tick := 0; tick < 60; tick++ { // one heartbeat round per second
				now := fc.Now()
				for v := 0; v < 40; v++ {
					// viewer v watches from second 2v/3 for 20+v/2 seconds, beating every 5 s
					from, until := 2*v/3, 2*v/3+20+v/2
					if tick >= from && tick < until && (tick-from)%5 == 0 {
						viewers(t, s, netip.AddrFrom4([4]byte{198, 51, 100, byte(v)}).String()+":9")
						lastSeen[v] = now
					}
				}
				if (tick+1)%5 == 0 {
					advanceSweep(t, fc, time.Second)
					want := 0
					for _, seen := range lastSeen {
						if fc.Now().Sub(seen) < 10*time.Second {
							want++
						}
					}
					if got := s.Store().Count(); got != want {
						t.Fatalf("at %v: count %d, want %d", fc.Now().Sub(t0), got, want)
					}
				} else {
					fc.Advance(time.Second)
				}
			}
		})
	}
}

// TestTrustedProxyEndToEnd: through the handler, a spoofing client is one viewer however
// many addresses it claims; a trusted proxy's header names distinct viewers.
func TestTrustedProxyEndToEnd(t *testing.T) {
	s, _ := newTestServer(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for i := 0; i < 5; i++ {
		get(t, s, "198.51.100.7:4000", "", map[string]string{
			"X-Forwarded-For":  netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String(),
			"CF-Connecting-IP": netip.AddrFrom4([4]byte{203, 0, 114, byte(i)}).String(),
		})
	}
	if n := s.Store().Count(); n != 1 {
		t.Fatalf("untrusted client claiming 5 addresses counted as %d viewers, want 1", n)
	}
	for i := 0; i < 5; i++ {
		get(t, s, "10.0.0.1:4000", "", map[string]string{"X-Forwarded-For": netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String()})
	}
	if n := s.Store().Count(); n != 6 {
		t.Fatalf("5 clients behind a trusted proxy + 1: %d viewers, want 6", n)
	}
}

// TestIDParam: ?id= separates viewers behind one address unless the server ignores it.
func TestIDParamServer(t *testing.T) {
	for _, tc := range []struct {
		ignore bool
		want   int
	}{
		{false, 3}, // three tabs behind one NAT are three viewers
		{true, 1},  // IgnoreIDParam: one address, one viewer
	} {
		s, _ := newTestServer(t, Config{IgnoreIDParam: tc.ignore})
		for _, id := range []string{"a", "b", "c", "a"} {
			get(t, s, "192.0.2.1:1", "?id="+id, nil)
		}
		if n := s.Store().Count(); n != tc.want {
			t.Errorf("IgnoreIDParam=%v: %d viewers, want %d", tc.ignore, n, tc.want)
		}
	}
}

// TestCapAndMetrics: the cap holds, overflow is counted, and every metric moves.
func TestCapAndMetrics(t *testing.T) {
	s, fc := newTestServer(t, Config{MaxViewers: 3, Expire: time.Second, Sweep: time.Second})
	for i := 0; i < 5; i++ {
		get(t, s, "192.0.2.1:1", "?id=v"+string(rune('0'+i)), nil)
	}
	get(t, s, "192.0.2.1:1", "?id=v0", nil)    // a refresh at the cap
	get(t, s, "192.0.2.1:1", "?id=b%61d", nil) // invalid
	if n := s.Store().Count(); n != 3 {
		t.Fatalf("count %d with cap 3", n)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{MetricHeartbeats, map[string]string{"result": "new"}, 3},
		{MetricHeartbeats, map[string]string{"result": "overflow"}, 2},
		{MetricHeartbeats, map[string]string{"result": "refresh"}, 1},
		{MetricHeartbeats, map[string]string{"result": "invalid"}, 1},
		{MetricViewers, nil, 3},
		{MetricMaxViewers, nil, 3},
		{MetricInfo, map[string]string{"store": DefaultStore}, 1},
		{"process_open_fds", nil, -1}, // present (any value): the FD figure the scenarios read
	} {
		got := metricValue(t, s, tc.name, tc.labels)
		if tc.want >= 0 && got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	advanceSweep(t, fc, time.Second)
	if got := metricValue(t, s, MetricEvictions, nil); got != 3 {
		t.Errorf("%s = %v after everyone expired, want 3", MetricEvictions, got)
	}
	if got := metricValue(t, s, MetricSweepDuration, nil); got != 1 {
		t.Errorf("%s count = %v, want 1", MetricSweepDuration, got)
	}
	if got := metricValue(t, s, MetricViewers, nil); got != 0 {
		t.Errorf("%s = %v after the sweep, want 0", MetricViewers, got)
	}
	// Names follow the contract.
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		n := mf.GetName()
		if !strings.HasPrefix(n, "stampede_counter_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("metric %s lacks the stampede_counter_ prefix", n)
		}
		if mf.GetType() == dto.MetricType_SUMMARY && strings.HasPrefix(n, "stampede_") {
			t.Errorf("metric %s is a summary; use histograms", n)
		}
	}
}

// metricValue finds a metric by name and labels (a subset) and returns its value; for a
// histogram, its sample count. It fails the test when absent.
func metricValue(t *testing.T, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{Store: "nope"}, "Store"},
		{Config{Expire: -time.Second}, "Expire"},
		{Config{Sweep: -time.Second}, "Sweep"},
		{Config{Shards: -1}, "Shards"},
		{Config{TrustedProxies: []netip.Prefix{{}}}, "TrustedProxies"},
	} {
		_, err := New(tc.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), "Config."+tc.field) {
			t.Errorf("New(%+v) = %v; want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	s, err := New(Config{MaxViewers: -1}) // negative: no cap
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c := s.Config(); c.Store != DefaultStore || c.Expire != DefaultExpire || c.Sweep != DefaultSweep {
		t.Errorf("defaults not applied: %+v", c)
	}
}
