package loadgen

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/servers/origin"
)

// TestEndToEndAgainstRealOrigin runs 200 viewers for 20 s against the real origin
// (servers/origin, in process): nobody stalls, and every request the origin saw was
// recorded by a viewer and vice versa. A run in which the generator itself fell behind
// (timer lag p99 over DefaultLagLimit: the machine is overloaded) is invalid, as it would
// be in a report, and is run once more; two invalid runs fail the test.
func TestEndToEndAgainstRealOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s run; -short skips it")
	}
	t.Parallel()
	const viewers = 200
	var (
		f       report.Tuning
		seen    int64
		sources int
	)
	for attempt := 1; ; attempt++ {
		f, seen, sources = endToEnd(t, viewers)
		t.Logf("run %d: origin saw %d, viewers recorded %d (playlist %d, segment %d); stalls %d; startup p99 %.1f ms; live latency p50 %.2f s; lag p99 %.1f ms",
			attempt, seen, recorded(f), f.Requests.Playlist, f.Requests.Segment, f.Stalls.Count, f.LatencyMs.Startup.P99, f.LiveLatencyS.P50, f.Generator.LagP99Ms)
		if f.Generator.LagP99Ms <= float64(DefaultLagLimit/time.Millisecond) {
			break
		}
		if attempt == 2 {
			t.Fatalf("the load generator was bound twice (timer lag p99 %.0f ms): the machine is too loaded for a valid run", f.Generator.LagP99Ms)
		}
	}
	if f.Viewers.Peak != viewers || f.Viewers.Sessions != viewers {
		t.Errorf("peak %d sessions %d, want %d", f.Viewers.Peak, f.Viewers.Sessions, viewers)
	}
	if f.Stalls.Count != 0 {
		t.Errorf("%d stalls, want 0", f.Stalls.Count)
	}
	if f.Errors.Total != 0 {
		t.Errorf("errors %+v, want none", f.Errors)
	}
	if recorded(f) != seen {
		t.Errorf("origin saw %d requests, viewers recorded %d", seen, recorded(f))
	}
	// About one segment per viewer per 2 s once joined: 200 viewers × (≥15 s) / 2 s.
	if f.Requests.Segment < viewers*7 {
		t.Errorf("only %d segments fetched", f.Requests.Segment)
	}
	if sources != viewers {
		t.Errorf("origin saw %d source addresses, want %d (one per viewer)", sources, viewers)
	}
	if f.LiveLatencyS.P50 < 6 || f.LiveLatencyS.P50 > 9 {
		t.Errorf("live latency p50 %.2f s, want 6..9 (3 target durations plus up to one)", f.LiveLatencyS.P50)
	}
}

func recorded(f report.Tuning) int64 {
	return f.Requests.Playlist + f.Requests.Segment + f.Requests.Heartbeat + f.Requests.Ping
}

// endToEnd runs the swarm against a fresh origin and returns its figures, the requests
// the origin saw and the number of distinct source addresses.
func endToEnd(t *testing.T, viewers int) (report.Tuning, int64, int) {
	o, err := origin.New(origin.Config{
		Epoch:  time.Now().Add(-30 * time.Second), // a full playlist from the start
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var (
		seen    atomic.Int64
		mu      sync.Mutex // protects sources
		sources = map[string]bool{}
	)
	h := o.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/live/") {
			seen.Add(1)
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			mu.Lock()
			sources[host] = true
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s, err := NewSwarm(SwarmConfig{
		Targets:  Targets{Master: srv.URL + "/live/master.m3u8"},
		Arrivals: Arrivals{Kind: ArrivalRamp, Count: viewers, Over: 5 * time.Second},
		Duration: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv.Close() // every handler has returned: seen is final
	mu.Lock()
	defer mu.Unlock()
	return res.Figures, seen.Load(), len(sources)
}
