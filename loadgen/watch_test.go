package loadgen

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/servers/origin"
)

// observed collects measurements from Watch's Observe, concurrently.
type observed struct {
	mu  sync.Mutex // protects all
	all []Measurement
}

func (o *observed) add(m Measurement) {
	o.mu.Lock()
	o.all = append(o.all, m)
	o.mu.Unlock()
}

func (o *observed) of(k MeasurementKind) []Measurement {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Measurement
	for _, m := range o.all {
		if m.What == k {
			out = append(out, m)
		}
	}
	return out
}

// waitTimers waits (in real time) until the virtual clock has n timers armed: Watch
// runs on its own goroutine and must have armed its timers before the clock moves.
func waitTimers(t *testing.T, c *vclock, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		armed := len(c.timers)
		c.mu.Unlock()
		if armed >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d timers armed, want %d", armed, n)
		}
		time.Sleep(time.Millisecond) // polling a condition, not synchronising on time
	}
}

// TestWatchMeasuresAStallExactly runs one viewer through Watch on the virtual clock,
// with its start-up taking 300 ms and segment 12 answered 8 s late: Observe sees one stall begin and end, the result
// agrees with what was observed, and start-up + played + stalled add up to Duration
// exactly. The caller's Dial opened every connection.
func TestWatchMeasuresAStallExactly(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	s.delay = func(r reqInfo) time.Duration {
		switch {
		case r.Master:
			return 100 * time.Millisecond
		case r.Kind == KindPlaylist && r.Seq < 0 && len(s.requests()) == 2:
			return 200 * time.Millisecond // the first media playlist
		case r.Kind == KindSegment && r.Seq == 12:
			return 8 * time.Second
		}
		return 0
	}
	srv := s.serve(t, "origin")
	var obs observed
	var dials atomic.Int64
	const dur = 40 * time.Second
	done := make(chan *WatchResult, 1)
	go func() {
		res, err := watch(context.Background(), WatchConfig{
			Targets:  Targets{Master: srv.URL + "/live/master.m3u8"},
			Duration: dur,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return c.dial(network, addr, time.Second)
			},
			Observe: obs.add,
		}, c)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitTimers(t, c, 2) // the duration and the first playlist load
	c.run(t, dur)
	var res *WatchResult
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Watch did not return after its duration")
	}

	if res.Reason != SessionStopped || res.Stalls != 1 || res.Errors != 0 {
		t.Fatalf("result %+v: want stopped, 1 stall, no errors", res)
	}
	began, ended := obs.of(MeasureStallBegan), obs.of(MeasureStallEnded)
	if len(began) != 1 || len(ended) != 1 || !ended[0].Complete || ended[0].Duration != res.StallTime || res.StallTime <= 0 {
		t.Fatalf("stalls observed: %d began, ended %+v; result stall time %v", len(began), ended, res.StallTime)
	}
	// Multivariant 100 ms, media playlist 200 ms, first segment at once.
	if st := obs.of(MeasureStartup); len(st) != 1 || st[0].Duration != res.Startup || res.Startup != 300*time.Millisecond {
		t.Fatalf("startup observed %+v, result %v", st, res.Startup)
	}
	if got := res.Startup + res.Played + res.StallTime; got != dur {
		t.Fatalf("startup %v + played %v + stalled %v = %v, want the %v watched", res.Startup, res.Played, res.StallTime, got, dur)
	}
	if want := res.StallTime.Seconds() / (res.Played + res.StallTime).Seconds(); res.RebufferRatio != want {
		t.Fatalf("rebuffer ratio %v, want %v", res.RebufferRatio, want)
	}
	end := obs.of(MeasureSessionEnd)
	if len(end) != 1 || end[0].Reason != SessionStopped || end[0].Played != res.Played || end[0].Stalls != 1 {
		t.Fatalf("session end observed %+v, result %+v", end, res)
	}
	reqs := obs.of(MeasureRequest)
	if int64(len(reqs)) != res.Requests || len(reqs) != len(s.requests()) {
		t.Fatalf("%d requests observed, %d in the result, %d served", len(reqs), res.Requests, len(s.requests()))
	}
	mirror := strings.TrimPrefix(srv.URL, "http://")
	var segs int
	for _, m := range reqs {
		if m.Mirror != mirror || m.Class != "" || m.Status != 200 {
			t.Fatalf("request measured %+v, want a 200 from %s", m, mirror)
		}
		if m.Kind == KindSegment {
			segs++
			if m.Bytes != 125_000 || m.Duration < m.TTFB {
				t.Fatalf("segment measured %+v: want 125000 bytes, duration >= ttfb", m)
			}
		}
	}
	if segs < 15 {
		t.Fatalf("%d segments in 40 s of 2 s segments", segs)
	}
	if lat := obs.of(MeasureLiveLatency); len(lat) != segs {
		t.Fatalf("%d live latencies for %d segments", len(lat), segs)
	}
	if dials.Load() == 0 {
		t.Fatal("the caller's Dial was never used")
	}
}

// TestWatchUnreachableMirrorIsAFatalSessionNotAnError: a refused connection is measured
// (class refused), retried per the manifest policy, and ends the session as fatal; Watch
// itself succeeds, since a failed session is a result.
func TestWatchUnreachableMirrorIsAFatalSessionNotAnError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	c := newVClock(epoch)
	var obs observed
	done := make(chan *WatchResult, 1)
	go func() {
		res, err := watch(context.Background(), WatchConfig{
			Targets: Targets{Master: "http://" + addr + "/live/master.m3u8"},
			Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
				return c.dial(network, a, time.Second)
			},
			Observe: obs.add,
		}, c)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitTimers(t, c, 1)
	c.run(t, 30*time.Second)
	var res *WatchResult
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Watch did not return after a fatal error")
	}
	// DefaultManifestPolicy: one retry after an error.
	want := int64(1 + DefaultManifestPolicy.ErrorRetries)
	if res.Reason != SessionFatal || res.Errors != want || res.Requests != want || res.Startup != 0 {
		t.Fatalf("result %+v: want fatal after %d refused requests, no start-up", res, want)
	}
	for _, m := range obs.of(MeasureRequest) {
		if m.Class != report.ClassRefused || m.Kind != KindPlaylist || m.Mirror != addr || m.Status != 0 {
			t.Fatalf("measured %+v, want a refused playlist load from %s", m, addr)
		}
	}
}

// TestWatchRealOriginThroughCallersDialer plays the real origin (in process) with each
// HTTP client: every byte the viewer measured came through connections the caller's
// Dial opened, and nothing failed.
func TestWatchRealOriginThroughCallersDialer(t *testing.T) {
	t.Parallel()
	url := startInProcessOrigin(t)
	for _, client := range []string{
		ClientStampede, // the viewer's own HTTP/1.1 client (its dial hook)
		ClientNetHTTP,  // net/http (its Transport's DialContext)
	} {
		t.Run(strings.ReplaceAll(client, "/", "-"), func(t *testing.T) {
			t.Parallel()
			var read atomic.Int64
			var dials atomic.Int64
			var obs observed
			res, err := Watch(context.Background(), WatchConfig{
				Targets:  Targets{Master: url},
				Player:   PlayerConfig{Client: client},
				Duration: 5 * time.Second,
				Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					var d net.Dialer
					nc, err := d.DialContext(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					return countingConn{Conn: nc, read: &read}, nil
				},
				Observe: obs.add,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != SessionStopped || res.Errors != 0 || res.Startup <= 0 || res.Stalls != 0 {
				t.Fatalf("result %+v: want a clean session that started", res)
			}
			if len(obs.of(MeasureRequest)) != int(res.Requests) || res.Requests < 4 {
				t.Fatalf("%d requests observed, result %+v", len(obs.of(MeasureRequest)), res)
			}
			if dials.Load() == 0 || read.Load() < res.Bytes || res.Bytes == 0 {
				t.Fatalf("%d dials read %d bytes; the viewer measured %d body bytes", dials.Load(), read.Load(), res.Bytes)
			}
		})
	}
}

// TestWatchContextEndStopsAtOnce: when the caller's context ends (k6 interrupting an
// iteration), Watch returns promptly, the session ends as stopped, and no measurement
// arrives after Watch returned.
func TestWatchContextEndStopsAtOnce(t *testing.T) {
	t.Parallel()
	url := startInProcessOrigin(t)
	ctx, cancel := context.WithCancel(context.Background())
	var returned atomic.Bool
	var late atomic.Int64
	started := make(chan struct{})
	var once sync.Once
	type out struct {
		res *WatchResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := Watch(ctx, WatchConfig{
			Targets:  Targets{Master: url},
			Duration: time.Hour,
			Observe: func(m Measurement) {
				if returned.Load() {
					late.Add(1)
				}
				if m.What == MeasureStartup {
					once.Do(func() { close(started) })
				}
			},
		})
		returned.Store(true)
		done <- out{res, err}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("playback never started")
	}
	cancel()
	var o out
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch still running 10 s after its context ended")
	}
	if o.err != nil || o.res.Reason != SessionStopped || o.res.Played <= 0 {
		t.Fatalf("result %+v, err %v: want a stopped session that played", o.res, o.err)
	}
	if late.Load() != 0 {
		t.Fatalf("%d measurements arrived after Watch returned", late.Load())
	}
}

func TestWatchConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  WatchConfig
		want string
	}{
		// no target at all
		{WatchConfig{}, "Targets"},
		// a negative duration
		{WatchConfig{Targets: Targets{Master: "http://127.0.0.1:1/live/master.m3u8"}, Duration: -time.Second}, "Duration"},
		// a negative grace
		{WatchConfig{Targets: Targets{Master: "http://127.0.0.1:1/live/master.m3u8"}, StopGrace: -time.Second}, "StopGrace"},
		// a bad player setting
		{WatchConfig{Targets: Targets{Master: "http://127.0.0.1:1/live/master.m3u8"}, Player: PlayerConfig{Client: "curl"}}, "PlayerConfig.Client"},
		// a mirror that is no URL
		{WatchConfig{Targets: Targets{Mirrors: []string{"ftp://x"}}}, "Targets.Mirrors[0]"},
	} {
		_, err := Watch(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Watch(%+v): error %v, want one naming %s", tc.cfg, err, tc.want)
		}
	}
}

// TestMeasurementKindNames: every kind has its own name.
func TestMeasurementKindNames(t *testing.T) {
	seen := map[string]bool{}
	for k := MeasurementKind(0); k < numMeasurementKinds; k++ {
		n := k.String()
		if n == "" || n == "unknown" || seen[n] {
			t.Fatalf("kind %d named %q", k, n)
		}
		seen[n] = true
	}
	if numMeasurementKinds.String() != "unknown" {
		t.Fatal("an out-of-range kind has a name")
	}
}

// countingConn counts the bytes read through a connection.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// startInProcessOrigin serves the real origin (in process) with a full playlist from the start
// and returns its multivariant playlist URL.
func startInProcessOrigin(t *testing.T) string {
	t.Helper()
	o, err := origin.New(origin.Config{
		Epoch:  time.Now().Add(-30 * time.Second),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o.Handler())
	t.Cleanup(func() {
		srv.Close()
		o.Close()
	})
	return srv.URL + "/live/master.m3u8"
}
