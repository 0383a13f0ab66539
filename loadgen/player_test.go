package loadgen

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestStartsThreeTargetDurationsBehindLiveEdge(t *testing.T) {
	t.Parallel()
	// Joining at epoch+20.5 s: segments 0..9 are complete, the window lists 4..9, the
	// edge is the end of segment 9 (epoch+20 s). Three target durations back is the
	// start of segment 7, whose program date-time is epoch+14 s.
	c := newVClock(epoch.Add(20500 * time.Millisecond))
	s := newTestStream(c, epoch, 2*time.Second)
	srv := s.serve(t, "origin")
	v, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: srv.URL + "/live/master.m3u8"})
	c.run(t, 100*time.Millisecond)

	segs := s.where(func(r reqInfo) bool { return r.Kind == KindSegment })
	if len(segs) < 3 || segs[0].Seq != 7 || segs[1].Seq != 8 || segs[2].Seq != 9 {
		t.Fatalf("segments fetched %v, want 7, 8, 9 first", seqs(segs))
	}
	// Live latency at the first frame: 20.5 s (now) - 14 s (playhead date) = 6.5 s.
	got := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures.LiveLatencyS
	if got.P50 < 6.49 || got.P50 > 6.51 {
		t.Fatalf("live latency p50 %.3f s, want 6.5 (3 target durations + 0.5 s since the edge)", got.P50)
	}
	// Three 2 s segments buffered at 20.5 s, 0.1 s played since.
	if st := v.State(); !st.Playing || st.Buffer != 5900*time.Millisecond {
		t.Fatalf("state %+v, want playing with a 5.9 s buffer", st)
	}
}

func TestStartupMeasuredFromJoin(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	// Multivariant 100 ms, media playlist 200 ms, first segment 300 ms: the first frame
	// can play 600 ms after the viewer joined.
	s.delay = func(r reqInfo) time.Duration {
		switch {
		case r.Master:
			return 100 * time.Millisecond
		case r.Kind == KindPlaylist:
			return 200 * time.Millisecond
		case r.Kind == KindSegment && r.Seq == 7:
			return 300 * time.Millisecond
		}
		return 0
	}
	srv := s.serve(t, "origin")
	v, _ := testViewer(t, c, PlayerConfig{}, Targets{Master: srv.URL + "/live/master.m3u8"})
	c.run(t, 5*time.Second)
	if got := v.State().Startup; got != 600*time.Millisecond {
		t.Fatalf("startup %v, want 600ms", got)
	}
}

func TestReloadIntervalsFollowRFC8216(t *testing.T) {
	t.Parallel()
	// A playlist that changes only when the script says, answered after a scripted
	// delay. RFC 8216 §6.3.4: after a load that found it changed (or the first), wait
	// one target duration; after one that found it unchanged, half; both from when that
	// load began — so the answer delays must not shift the schedule.
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	script := []struct {
		advance bool          // this answer lists one more segment than the last
		delay   time.Duration // virtual time to answer
	}{
		{true, 300 * time.Millisecond}, // first load (counts as changed)
		{false, 200 * time.Millisecond},
		{false, 100 * time.Millisecond},
		{true, 400 * time.Millisecond},
		{true, 0},
		{false, 200 * time.Millisecond},
		{true, 0},
	}
	var (
		n   int
		end = epoch.Add(20 * time.Second) // the listed edge, moved by the script
	)
	s.delay = func(r reqInfo) time.Duration {
		if r.Kind != KindPlaylist || r.Master {
			return 0
		}
		i := n
		n++
		if i >= len(script) {
			return 0
		}
		if script[i].advance && i > 0 {
			end = end.Add(2 * time.Second)
		}
		return script[i].delay
	}
	frozen := s.handler("origin")
	mux := http.NewServeMux()
	mux.HandleFunc("/live/0/index.m3u8", func(w http.ResponseWriter, r *http.Request) {
		// Serve the scripted edge instead of the clock's.
		s.mu.Lock()
		s.log = append(s.log, reqInfo{At: c.Now(), Kind: KindPlaylist, Level: 0})
		s.mu.Unlock()
		d := s.delay(reqInfo{Kind: KindPlaylist})
		edge := end
		c.sleep(r.RemoteAddr, r.Context(), d)
		w.Write([]byte(s.media(edge)))
	})
	mux.Handle("/", frozen)
	srv := httptestServer(t, mux)
	testViewer(t, c, PlayerConfig{}, Targets{Master: srv + "/live/master.m3u8"})
	c.run(t, 12*time.Second)

	loads := s.where(func(r reqInfo) bool { return r.Kind == KindPlaylist && !r.Master && r.Level == 0 })
	if len(loads) < len(script) {
		t.Fatalf("%d media playlist loads, want at least %d", len(loads), len(script))
	}
	for i := 1; i < len(script); i++ {
		want := 2 * time.Second // the previous load found it changed
		if !script[i-1].advance {
			want = time.Second
		}
		if got := loads[i].At.Sub(loads[i-1].At); got != want {
			t.Errorf("reload %d came %v after the previous load began, want %v", i, got, want)
		}
	}
}

func seqs(rs []reqInfo) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

func httptestServer(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDelayedSegmentCausesExactlyOneStall(t *testing.T) {
	t.Parallel()
	const delayed = 12
	const delay = 8 * time.Second // under hls.js's 10 s time-to-first-byte limit
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	s.delay = func(r reqInfo) time.Duration {
		if r.Kind == KindSegment && r.Seq == delayed {
			return delay
		}
		return 0
	}
	srv := s.serve(t, "origin")
	v, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: srv.URL + "/live/master.m3u8"})
	c.run(t, 40*time.Second)

	// Expected from what the server saw: the buffer when segment 12 was asked for is
	// what had been delivered before it minus what had played since the first segment;
	// the stall is the part of the delay the buffer could not cover.
	segs := s.where(func(r reqInfo) bool { return r.Kind == KindSegment })
	first := segs[0]
	var req reqInfo
	var before int64
	for _, r := range segs {
		if r.Seq == delayed {
			req = r
			break
		}
		before++
	}
	buffered := time.Duration(before) * 2 * time.Second
	buffer := buffered - req.At.Sub(first.At)
	want := delay - buffer
	if want <= 0 {
		t.Fatalf("test setup: buffer %v covers the %v delay", buffer, delay)
	}
	st := v.State()
	if st.Stalls != 1 || st.StallTime != want {
		t.Fatalf("stalls %d lasting %v, want exactly 1 of %v (buffer %v at the request)", st.Stalls, st.StallTime, want, buffer)
	}
	fig := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures
	if wantMs := float64(want / time.Millisecond); fig.Stalls.Count != 1 || fig.Player.StallMs.Max < wantMs || fig.Player.StallMs.Max > wantMs*1.001+1 {
		t.Fatalf("recorded %d stalls, longest %.0f ms; want 1 of %v (within HDR's 3 digits)", fig.Stalls.Count, fig.Player.StallMs.Max, want)
	}
	if st.Stalled || !st.Playing {
		t.Fatalf("state %+v: want playing again after the segment landed", st)
	}
}

func TestABRSwitchesDownWhenThroughputDropsAndUpWhenItRecovers(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second, 400_000, 1_600_000)
	drop, recover := epoch.Add(60*time.Second), epoch.Add(120*time.Second)
	s.rate = func(r reqInfo) float64 {
		if r.At.After(drop) && r.At.Before(recover) {
			return 600_000 // between the two renditions' needs
		}
		return 0 // instant: counts as 50 ms, hls.js's minimum sample
	}
	srv := s.serve(t, "origin")
	_, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: srv.URL + "/live/master.m3u8"})
	c.runUntil(t, epoch.Add(240*time.Second))

	segs := s.where(func(r reqInfo) bool { return r.Kind == KindSegment })
	// Levels requested, with consecutive repeats folded: start low (500 kbps estimate
	// × 0.7 < 1.6 Mbps), go high on fast downloads, low after the drop, high again.
	var phases []int
	var downAt, upAt time.Time
	for _, r := range segs {
		if len(phases) == 0 || phases[len(phases)-1] != r.Level {
			phases = append(phases, r.Level)
			if r.Level == 0 && len(phases) > 1 {
				downAt = r.At
			} else if r.Level == 1 && len(phases) > 2 {
				upAt = r.At
			}
		}
	}
	if len(phases) != 4 || phases[0] != 0 || phases[1] != 1 || phases[2] != 0 || phases[3] != 1 {
		t.Fatalf("rendition phases %v, want [0 1 0 1]", phases)
	}
	if downAt.Before(drop) || upAt.Before(recover) {
		t.Fatalf("switched down at +%v, up at +%v; drop at +60s, recovery at +120s", downAt.Sub(epoch), upAt.Sub(epoch))
	}
	fig := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures
	if fig.Player.RenditionUp != 2 || fig.Player.RenditionDown != 1 {
		t.Fatalf("switches up %d down %d, want 2 and 1", fig.Player.RenditionUp, fig.Player.RenditionDown)
	}
}

func TestViewerPicksNearestMirror(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		slowA     time.Duration // ping (master playlist) delay of mirror a
		slowB     time.Duration
		wantFirst string
	}{
		{"a nearer", 10 * time.Millisecond, 80 * time.Millisecond, "a"}, // both answer; a sooner
		{"b nearer", 80 * time.Millisecond, 10 * time.Millisecond, "b"}, // configured order does not matter
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newVClock(epoch.Add(20 * time.Second))
			s := newTestStream(c, epoch, 2*time.Second)
			s.delay = func(r reqInfo) time.Duration {
				if !r.Master {
					return 0
				}
				if r.Server == "a" {
					return tc.slowA
				}
				return tc.slowB
			}
			a, b := s.serve(t, "a"), s.serve(t, "b")
			v, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: a.URL + "/live/master.m3u8", Mirrors: []string{a.URL, b.URL}})
			c.run(t, 10*time.Second)
			segs := s.where(func(r reqInfo) bool { return r.Kind == KindSegment })
			for _, r := range segs {
				if r.Server != tc.wantFirst {
					t.Fatalf("segment %d from %s, want every segment from %s", r.Seq, r.Server, tc.wantFirst)
				}
			}
			if len(segs) == 0 {
				t.Fatal("no segments fetched")
			}
			fig := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures
			if fig.Requests.Ping != 2 {
				t.Fatalf("%d pings, want one per mirror", fig.Requests.Ping)
			}
			if st := v.State(); st.Mirror != map[string]string{"a": a.Listener.Addr().String(), "b": b.Listener.Addr().String()}[tc.wantFirst] {
				t.Fatalf("viewer on %s, want %s", st.Mirror, tc.wantFirst)
			}
		})
	}
}

func TestMirrorFailoverAfterConfiguredErrors(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	failFrom := epoch.Add(30 * time.Second)
	s.delay = func(r reqInfo) time.Duration {
		if r.Master && r.Server == "b" {
			return 50 * time.Millisecond // a is nearer
		}
		return 0
	}
	s.status = func(r reqInfo) int {
		if r.Server == "a" && r.Kind == KindSegment && !r.At.Before(failFrom) {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	a, b := s.serve(t, "a"), s.serve(t, "b")
	v, rec := testViewer(t, c, PlayerConfig{FailoverAfter: 3}, Targets{Master: a.URL + "/live/master.m3u8", Mirrors: []string{a.URL, b.URL}})
	c.run(t, 30*time.Second)

	failedAtA := s.where(func(r reqInfo) bool { return r.Server == "a" && r.Kind == KindSegment && !r.At.Before(failFrom) })
	if len(failedAtA) != 3 {
		t.Fatalf("mirror a saw %d failing segment requests, want exactly 3 before the viewer moved", len(failedAtA))
	}
	// 1 s then 2 s of hls.js back-off between them, then the next try goes to b at once.
	if d1, d2 := failedAtA[1].At.Sub(failedAtA[0].At), failedAtA[2].At.Sub(failedAtA[1].At); d1 != time.Second || d2 != 2*time.Second {
		t.Fatalf("retries after %v and %v, want 1s and 2s", d1, d2)
	}
	atB := s.where(func(r reqInfo) bool { return r.Server == "b" && r.Kind == KindSegment })
	if len(atB) == 0 || atB[0].Seq != failedAtA[0].Seq || !atB[0].At.Equal(failedAtA[2].At) {
		t.Fatalf("b's first segment %+v, want segment %d right after a's third failure", atB, failedAtA[0].Seq)
	}
	if late := s.where(func(r reqInfo) bool { return r.Server == "a" && r.At.After(failedAtA[2].At) }); len(late) != 0 {
		t.Fatalf("%d requests to a after the switch", len(late))
	}
	fig := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures
	if fig.Player.MirrorSwitches != 1 || fig.Errors.ByClass[report.ClassHTTP5xx] != 3 {
		t.Fatalf("switches %d, 5xx %d; want 1 and 3", fig.Player.MirrorSwitches, fig.Errors.ByClass[report.ClassHTTP5xx])
	}
	if st := v.State(); st.Mirror != b.Listener.Addr().String() || st.Stopped {
		t.Fatalf("state %+v: want playing from b", st)
	}
}

func TestFragmentRetriesBackOffThenFatal(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	s.window = 40 // segment 10 stays listed through the whole back-off
	s.status = func(r reqInfo) int {
		if r.Kind == KindSegment && r.Seq >= 10 {
			return http.StatusBadGateway
		}
		return 0
	}
	srv := s.serve(t, "origin")
	v, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: srv.URL + "/live/master.m3u8"})
	c.run(t, 60*time.Second)

	tries := s.where(func(r reqInfo) bool { return r.Kind == KindSegment && r.Seq == 10 })
	// hls.js fragLoadPolicy.errorRetry: 6 retries, 1 s doubling to 8 s.
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if len(tries) != 7 {
		t.Fatalf("segment 10 tried %d times, want 7", len(tries))
	}
	for i, w := range want {
		if got := tries[i+1].At.Sub(tries[i].At); got != w {
			t.Errorf("retry %d after %v, want %v", i+1, got, w)
		}
	}
	st := v.State()
	if !st.Stopped || st.Reason != reasonFatal {
		t.Fatalf("state %+v, want stopped on a fatal error", st)
	}
	fig := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures
	if fig.Viewers.Failed != 1 || fig.Errors.ByClass[report.ClassHTTP5xx] != 7 {
		t.Fatalf("failed sessions %d, 5xx %d; want 1 and 7", fig.Viewers.Failed, fig.Errors.ByClass[report.ClassHTTP5xx])
	}
}

func TestFragmentTTFBTimeoutRetriesAtOnce(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	var slowOnce bool
	s.delay = func(r reqInfo) time.Duration {
		if r.Kind == KindSegment && r.Seq == 10 && !slowOnce {
			slowOnce = true
			return 11 * time.Second // past hls.js's 10 s time to first byte
		}
		return 0
	}
	srv := s.serve(t, "origin")
	v, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: srv.URL + "/live/master.m3u8"})
	c.run(t, 30*time.Second)

	tries := s.where(func(r reqInfo) bool { return r.Kind == KindSegment && r.Seq == 10 })
	if len(tries) != 2 || tries[1].At.Sub(tries[0].At) != 10*time.Second {
		t.Fatalf("segment 10 tried at %v, want twice, the retry exactly 10 s (the TTFB limit) after the first", tries)
	}
	fig := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures
	if fig.Errors.ByClass[report.ClassTimeout] != 1 || fig.Errors.Total != 1 {
		t.Fatalf("errors %+v, want exactly one timeout", fig.Errors)
	}
	if st := v.State(); st.Stopped {
		t.Fatalf("viewer stopped: %+v", st)
	}
}

func TestBufferCappedAndStreamEnd(t *testing.T) {
	t.Parallel()
	// A finished (ENDLIST) stream of 40 two-second segments: the player starts at the
	// first, fills its buffer past MaxBufferLength (30 s, hls.js maxBufferLength) and
	// then fetches one segment each time the buffer drops back to 30 s; when the last
	// one has played, the session ends.
	c := newVClock(epoch)
	s := newTestStream(c, epoch, 2*time.Second)
	mux := http.NewServeMux()
	mux.HandleFunc("/live/0/index.m3u8", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.log = append(s.log, reqInfo{At: c.Now(), Kind: KindPlaylist, Level: 0})
		s.mu.Unlock()
		body := "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
		for k := 0; k < 40; k++ {
			body += fmt.Sprintf("#EXTINF:2.0,\n%d.ts\n", k)
		}
		w.Write([]byte(body + "#EXT-X-ENDLIST\n"))
	})
	mux.Handle("/", s.handler("origin"))
	srv := httptestServer(t, mux)
	v, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: srv + "/live/master.m3u8"})
	c.run(t, 100*time.Second)

	segs := s.where(func(r reqInfo) bool { return r.Kind == KindSegment })
	if len(segs) != 40 {
		t.Fatalf("%d segments fetched, want all 40", len(segs))
	}
	for k, r := range segs {
		want := time.Duration(0)
		if k >= 16 {
			want = time.Duration(k-15) * 2 * time.Second
		}
		if r.Seq != int64(k) || r.At.Sub(epoch) != want {
			t.Fatalf("segment %d fetched at +%v, want segment %d at +%v", r.Seq, r.At.Sub(epoch), k, want)
		}
	}
	if n := len(s.where(func(r reqInfo) bool { return r.Kind == KindPlaylist && !r.Master })); n != 1 {
		t.Fatalf("%d media playlist loads, want 1 (an ENDLIST playlist is not reloaded)", n)
	}
	st := v.State()
	if !st.Stopped || st.Reason != reasonEnd || st.Stalls != 0 {
		t.Fatalf("state %+v, want ended without stalls", st)
	}
	if got := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Reasons[reasonEnd]; got != 1 {
		t.Fatalf("sessions ended by the stream's end: %d", got)
	}
}

func TestRandomMirrorChoiceSpreadsViewersWithoutPing(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	a, b := s.serve(t, "a"), s.serve(t, "b")
	cfg, _ := PlayerConfig{MirrorChoice: ChooseRandom}.withDefaults()
	env := &viewerEnv{cfg: cfg, sched: c}
	if err := env.setTargets(Targets{Master: a.URL + "/live/master.m3u8", Mirrors: []string{a.URL, b.URL}}); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(nil, []string{"a", "b"})
	env.rec = rec
	for id := 0; id < 40; id++ {
		v := newViewer(env, id, nil)
		v.client.(*httpClient).dial = c.dial
		v.start()
		t.Cleanup(func() { v.stop(reasonStopped); v.abort() })
	}
	c.run(t, time.Second)
	per := map[string]int{}
	for _, r := range s.where(func(r reqInfo) bool { return r.Master }) {
		per[r.Server]++
	}
	if per["a"] < 10 || per["b"] < 10 || per["a"]+per["b"] != 40 {
		t.Fatalf("joins per mirror %v, want 40 spread over both", per)
	}
	if n := rec.Requests(KindPing); n != 0 {
		t.Fatalf("%d pings with a random choice", n)
	}
}

func TestHeartbeatsEveryFiveSecondsAndCounterCompared(t *testing.T) {
	t.Parallel()
	c := newVClock(epoch.Add(20 * time.Second))
	s := newTestStream(c, epoch, 2*time.Second)
	s.delay = func(r reqInfo) time.Duration {
		if r.Kind == KindHeartbeat {
			return 300 * time.Millisecond
		}
		return 0
	}
	srv := s.serve(t, "origin")
	v, rec := testViewer(t, c, PlayerConfig{}, Targets{Master: srv.URL + "/live/master.m3u8", Counter: srv.URL})
	c.run(t, 10100*time.Millisecond) // heartbeats at +0, +5, +10 s; the last still in flight
	beats := s.where(func(r reqInfo) bool { return r.Kind == KindHeartbeat })
	if len(beats) != 3 || beats[1].At.Sub(beats[0].At) != 5*time.Second || beats[2].At.Sub(beats[1].At) != 5*time.Second {
		t.Fatalf("heartbeats at %v, want every 5 s from join", beats)
	}
	// The viewer leaves while its third heartbeat is in flight: the counter's answer (1)
	// lands after the truth became 0 and must not be compared with it.
	v.stop(reasonStopped)
	c.run(t, time.Second)
	fig := rec.result(epoch, epoch, 1, report.Generator{}, false, time.Second).Figures
	if fig.Counter.MaxAbsError != 0 || fig.Player.CounterAnswers != 2 || fig.Requests.Heartbeat != 3 {
		t.Fatalf("counter error %d, answers %d, heartbeats %d; want 0, 2, 3", fig.Counter.MaxAbsError, fig.Player.CounterAnswers, fig.Requests.Heartbeat)
	}
}
