package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/servers/origin"
)

// peers records who connected to a server: source IP → set of source ports.
type peers struct {
	mu    sync.Mutex // protects conns, count
	conns map[string]map[string]bool
	count map[string]int // requests per IP
}

func (p *peers) note(remote string) {
	host, port, _ := net.SplitHostPort(remote)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns, p.count = map[string]map[string]bool{}, map[string]int{}
	}
	if p.conns[host] == nil {
		p.conns[host] = map[string]bool{}
	}
	p.conns[host][port] = true
	p.count[host]++
}

func (p *peers) snapshot() (map[string]map[string]bool, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns, p.count
}

// liveOrigin is the real origin in process, with a full playlist from the start.
func liveOrigin(t testing.TB, renditions int) http.Handler {
	o, err := origin.New(origin.Config{
		Epoch:      time.Now().Add(-30 * time.Second),
		Renditions: renditions,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o.Handler()
}

// ipCounter answers heartbeats like the story's counter: distinct source IPs seen in
// the last 10 s.
type ipCounter struct {
	peers
	mu   sync.Mutex // protects seen
	seen map[string]time.Time
}

func (c *ipCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.note(r.RemoteAddr)
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	now := time.Now()
	c.seen[host] = now
	n := 0
	for _, t := range c.seen {
		if now.Sub(t) < 10*time.Second {
			n++
		}
	}
	c.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]int{"viewers": n})
}

func TestSwarmGivesEachViewerItsOwnAddressAndConnection(t *testing.T) {
	t.Parallel()
	var seen peers
	h := liveOrigin(t, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.note(r.RemoteAddr)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	var counter ipCounter
	csrv := httptest.NewServer(&counter)
	t.Cleanup(csrv.Close)

	const viewers = 30
	s, err := NewSwarm(SwarmConfig{
		Targets:  Targets{Master: srv.URL + "/live/master.m3u8", Counter: csrv.URL},
		Arrivals: Arrivals{Count: viewers, Over: time.Second},
		Duration: 8 * time.Second,
		LagLimit: 5 * time.Second, // shared CI machine under -race; not what this test checks
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conns, counts := seen.snapshot()
	if len(conns) != viewers {
		t.Fatalf("origin saw %d source addresses, want %d", len(conns), viewers)
	}
	for ip, ports := range conns {
		if a := net.ParseIP(ip); a == nil || !a.IsLoopback() || strings.HasPrefix(ip, "127.0.") {
			t.Errorf("source %s: want a loopback address outside 127.0.0.0/16", ip)
		}
		// A browser tab's keep-alive: one connection, a second only when a playlist
		// reload overlaps a segment download.
		if len(ports) > 2 {
			t.Errorf("source %s used %d connections for %d requests", ip, len(ports), counts[ip])
		}
	}
	cconns, ccounts := counter.snapshot()
	if len(cconns) != viewers {
		t.Fatalf("counter saw %d source addresses, want %d", len(cconns), viewers)
	}
	for ip, n := range ccounts {
		if n < 2 { // at join and 5 s later
			t.Errorf("%s sent %d heartbeats in 8 s", ip, n)
		}
	}
	f := res.Figures
	// Every answer is compared, except one per viewer that may land after it stopped.
	if f.Requests.Heartbeat < viewers*2 || f.Player.CounterAnswers < f.Requests.Heartbeat-viewers {
		t.Errorf("heartbeats %d, answers %d", f.Requests.Heartbeat, f.Player.CounterAnswers)
	}
	// Once every viewer's heartbeat is in, the counter (distinct addresses) agrees with
	// the truth. (During the ramp it trails by the heartbeats still on their way, more
	// so on a loaded machine, so the maximum error is not asserted here.)
	last := int64(-1)
	for _, p := range res.Series.Points {
		if p.CounterAnswer >= 0 {
			last = p.CounterAnswer
		}
	}
	if last != viewers {
		t.Errorf("the counter's last answer was %d, want %d", last, viewers)
	}
	if f.Errors.Total != 0 {
		t.Errorf("errors %+v", f.Errors)
	}
}

func TestSwarmStopsGracefullyOnCancel(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(liveOrigin(t, 1))
	t.Cleanup(srv.Close)
	var results bytes.Buffer
	s, err := NewSwarm(SwarmConfig{
		Targets:    Targets{Master: srv.URL + "/live/master.m3u8"},
		Arrivals:   Arrivals{Count: 20, Over: 500 * time.Millisecond},
		Duration:   time.Minute,
		Results:    &results,
		SampleRate: 0.5,
		LagLimit:   5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for s.Recorder().Requests(KindSegment) < 20*3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling with a deadline, not synchronising
		}
		cancel()
	}()
	start := time.Now()
	res, err := s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("Run took %v after cancel", took)
	}
	if !res.Incomplete || res.Figures.Pass {
		t.Fatalf("incomplete %v pass %v: a cancelled run is incomplete and no pass", res.Incomplete, res.Figures.Pass)
	}
	if res.Reasons[reasonStopped] != 20 || len(s.Viewers()) != 0 || s.Recorder().active.Load() != 0 {
		t.Fatalf("reasons %v, %d viewers left, %d active", res.Reasons, len(s.Viewers()), s.Recorder().active.Load())
	}
	f := res.Figures
	all := f.Requests.Playlist + f.Requests.Segment
	if f.Requests.Segment < 20*3 {
		t.Fatalf("%d segments recorded before the stop", f.Requests.Segment)
	}
	// Half of the requests, in vegeta's encoding, readable by vegeta's decoder.
	dec := vegeta.DecoderFor(&results)
	if dec == nil {
		t.Fatal("vegeta does not recognise the results encoding")
	}
	var n int64
	for {
		var r vegeta.Result
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if r.Code != 200 || r.Method != "GET" || !strings.HasPrefix(r.URL, srv.URL+"/live/") || r.Latency <= 0 || r.Timestamp.IsZero() {
			t.Fatalf("result %+v", r)
		}
		n++
	}
	// Requests cut short at the stop are counted but have no result to write.
	if written := all - f.Player.AbortedRequests; n < written/2-1 || n > written/2+1 {
		t.Fatalf("%d results for %d requests (%d cut short) at rate 0.5", n, all, f.Player.AbortedRequests)
	}
}

func TestSwarmHandlerServesMetricsWithLabels(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(liveOrigin(t, 1))
	t.Cleanup(srv.Close)
	s, err := NewSwarm(SwarmConfig{
		Targets:  Targets{Master: srv.URL + "/live/master.m3u8"},
		Arrivals: Arrivals{Count: 3},
		Duration: 2 * time.Second,
		Labels:   map[string]string{"run": "r1", "tuning": "t1"},
		LagLimit: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`stampede_viewers_requests_total{code="2xx",kind="segment",run="r1",tuning="t1"}`,
		`stampede_viewers_sessions_total{reason="stopped",run="r1",tuning="t1"} 3`,
		"process_open_fds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestNewSwarmRejectsBadConfig(t *testing.T) {
	ok := Targets{Master: "http://127.0.0.1:1/live/master.m3u8"}
	for _, tc := range []struct {
		cfg  SwarmConfig
		want string // the field the error names
	}{
		{SwarmConfig{Arrivals: Arrivals{Count: 1}}, "Targets"},                                                    // nothing to play
		{SwarmConfig{Targets: Targets{Master: "ftp://x/y.m3u8"}, Arrivals: Arrivals{Count: 1}}, "Targets.Master"}, // scheme
		{SwarmConfig{Targets: Targets{Master: "http://x"}, Arrivals: Arrivals{Count: 1}}, "Targets.Master"},       // no playlist
		{SwarmConfig{Targets: Targets{Mirrors: []string{"http://a", "::"}}, Arrivals: Arrivals{Count: 1}}, "Targets.Mirrors[1]"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1}, Duration: -1}, "Duration"},
		{SwarmConfig{Targets: ok}, "Arrivals.Count"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Kind: "trickle", Count: 1}}, "Arrivals.Kind"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Kind: ArrivalPoisson}}, "Arrivals.Rate"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1, Session: SessionLength{Dist: SessionFixed}}}, "Arrivals.Session.Mean"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1, Session: SessionLength{Dist: SessionUniform, Min: 2, Max: 1}}}, "Arrivals.Session"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1}, SampleRate: 2}, "SampleRate"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1}, SourceIPs: "maybe"}, "SourceIPs"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1}, SourceNet: "127.0.0.0/30"}, "SourceNet"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1}, Player: PlayerConfig{Client: "curl"}}, "PlayerConfig.Client"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1}, Player: PlayerConfig{BandwidthFactor: 2}}, "PlayerConfig.BandwidthFactor"},
		{SwarmConfig{Targets: ok, Arrivals: Arrivals{Count: 1}, Player: PlayerConfig{FragmentPolicy: LoadPolicy{TTFB: time.Second}}}, "PlayerConfig.FragmentPolicy"},
	} {
		_, err := NewSwarm(tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("NewSwarm(%+v): error %v, want one starting with %q", tc.cfg, err, tc.want)
		}
	}
}

func TestArrivalSchedules(t *testing.T) {
	t.Run("ramp spreads evenly", func(t *testing.T) {
		s := newSchedule(Arrivals{Kind: ArrivalRamp, Count: 4, Over: 4 * time.Second})
		for i := 0; i < 4; i++ {
			if at, ok := s.next(); !ok || at != time.Duration(i)*time.Second {
				t.Fatalf("arrival %d at %v", i, at)
			}
		}
		if _, ok := s.next(); ok {
			t.Fatal("a fifth arrival")
		}
	})
	t.Run("At delays the schedule", func(t *testing.T) {
		s := newSchedule(Arrivals{Kind: ArrivalRamp, Count: 2, Over: 2 * time.Second, At: 5 * time.Second})
		if a, _ := s.next(); a != 5*time.Second {
			t.Fatalf("first arrival at %v, want 5s", a)
		}
		if a, _ := s.next(); a != 6*time.Second {
			t.Fatalf("second arrival at %v, want 6s", a)
		}
	})
	t.Run("flash arrives in order within the window", func(t *testing.T) {
		a, _ := Arrivals{Kind: ArrivalFlash, Count: 1000}.withDefaults()
		s := newSchedule(a)
		var last time.Duration
		for i := 0; i < 1000; i++ {
			at, ok := s.next()
			if !ok || at < last || at > DefaultFlashWindow {
				t.Fatalf("arrival %d at %v after %v", i, at, last)
			}
			last = at
		}
	})
	t.Run("poisson keeps its rate", func(t *testing.T) {
		s := newSchedule(Arrivals{Kind: ArrivalPoisson, Rate: 50, Count: 20000, Seed: 7})
		var at time.Duration
		for i := 0; i < 20000; i++ {
			at, _ = s.next()
		}
		if rate := 20000 / at.Seconds(); rate < 48 || rate > 52 {
			t.Fatalf("rate %.1f/s, want 50 ± 2", rate)
		}
	})
	t.Run("session lengths", func(t *testing.T) {
		for _, tc := range []struct {
			l        SessionLength
			min, max time.Duration // of every draw
			mean     time.Duration // of the draws, ±5%
		}{
			{SessionLength{Dist: SessionFixed, Mean: time.Minute}, time.Minute, time.Minute, time.Minute},
			{SessionLength{Dist: SessionExponential, Mean: time.Minute, Min: 10 * time.Second}, 10 * time.Second, time.Hour, time.Minute},
			{SessionLength{Dist: SessionUniform, Min: time.Second, Max: 3 * time.Second}, time.Second, 3 * time.Second, 2 * time.Second},
		} {
			s := newSchedule(Arrivals{Kind: ArrivalRamp, Count: 1, Session: tc.l})
			var sum time.Duration
			for i := 0; i < 20000; i++ {
				d := s.sessionLength()
				if d < tc.min || d > tc.max {
					t.Fatalf("%s: draw %v outside %v..%v", tc.l.Dist, d, tc.min, tc.max)
				}
				sum += d
			}
			if mean := sum / 20000; mean < tc.mean*95/100 || mean > tc.mean*105/100 {
				t.Fatalf("%s: mean %v, want %v", tc.l.Dist, mean, tc.mean)
			}
		}
	})
	t.Run("target", func(t *testing.T) {
		for _, tc := range []struct {
			a    Arrivals
			want int
		}{
			{Arrivals{Kind: ArrivalRamp, Count: 5000}, 5000},
			{Arrivals{Kind: ArrivalPoisson, Rate: 10, Session: SessionLength{Dist: SessionFixed, Mean: time.Minute}}, 600}, // Little's law
			{Arrivals{Kind: ArrivalPoisson, Rate: 10, Count: 100, Session: SessionLength{Dist: SessionFixed, Mean: time.Minute}}, 100},
		} {
			if got := tc.a.Target(); got != tc.want {
				t.Errorf("%+v: target %d, want %d", tc.a, got, tc.want)
			}
		}
	})
}

func TestSourceAllocator(t *testing.T) {
	s, err := newSourceAllocator(DefaultSourceNet)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < 70000; i++ {
		ip := s.addr(i).(*net.TCPAddr).IP.To4()
		if ip[0] != 127 || ip[1] == 0 || ip[3] == 0 || ip[3] == 255 {
			t.Fatalf("viewer %d got %v", i, ip)
		}
		if seen[ip.String()] {
			t.Fatalf("viewer %d got %v twice", i, ip)
		}
		seen[ip.String()] = true
	}
	small, err := newSourceAllocator("127.9.9.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := small.addr(0).String(), small.addr(254).String(); a != b || a != "127.9.9.1:0" {
		t.Fatalf("a /24 wraps after 254 addresses: %s, %s", a, b)
	}
}

func TestRecorderSeriesStaysBounded(t *testing.T) {
	r := NewRecorder(nil, nil)
	r.maxPoints = 8
	start := time.Unix(0, 0)
	r.begin(start)
	ep := &endpoint{name: "m"}
	for i := 1; i <= 100; i++ {
		r.request(&request{kind: KindSegment, ep: ep}, 0, &response{code: 200, total: time.Millisecond, bytes: 10}, false)
		r.tick(start.Add(time.Duration(i) * time.Second))
	}
	res := r.result(start, start.Add(100*time.Second), 1, report.Generator{}, false, time.Second)
	var segs int64
	for _, p := range res.Series.Points {
		segs += p.Requests.Segment
	}
	if len(res.Series.Points) > 9 || res.Series.StepS != 16 || segs != 100 {
		t.Fatalf("%d points, step %v s, %d segments; want <= 9 points of 16 s holding all 100", len(res.Series.Points), res.Series.StepS, segs)
	}
	if last := res.Series.Points[len(res.Series.Points)-1]; last.T != 100 {
		t.Fatalf("last point at %v s, want 100", last.T)
	}
}

func TestSwarmChurnEndsSessions(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(liveOrigin(t, 1))
	t.Cleanup(srv.Close)
	s, err := NewSwarm(SwarmConfig{
		Targets: Targets{Master: srv.URL + "/live/master.m3u8"},
		Arrivals: Arrivals{Count: 10, Over: 500 * time.Millisecond,
			Session: SessionLength{Dist: SessionFixed, Mean: 1500 * time.Millisecond}},
		Duration: 4 * time.Second,
		LagLimit: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Reasons[reasonChurn] != 10 || res.Figures.Viewers.Sessions != 10 {
		t.Fatalf("sessions %d ended %v, want all 10 by churn", res.Figures.Viewers.Sessions, res.Reasons)
	}
	// Every viewer left by 2 s: the last points of the series have nobody watching.
	last := res.Series.Points[len(res.Series.Points)-1]
	if last.Active != 0 || last.Requests.Segment != 0 {
		t.Fatalf("last point %+v, want no viewers and no requests", last)
	}
}
