package load

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/stampede-live/stampede/servers/counter"
)

// startCounter serves a real counter on loopback and counts the TCP connections it
// accepts and the distinct peer addresses they came from.
type testCounter struct {
	*counter.Server
	URL   string
	conns atomic.Int64
	mu    sync.Mutex // protects peers
	peers map[netip.Addr]bool
	http  *httptest.Server
}

func startCounter(t *testing.T, cfg counter.Config) *testCounter {
	t.Helper()
	s, err := counter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCounter{Server: s, peers: map[netip.Addr]bool{}}
	tc.http = httptest.NewUnstartedServer(s.Handler())
	tc.http.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			tc.conns.Add(1)
			ap := netip.MustParseAddrPort(c.RemoteAddr().String())
			tc.mu.Lock()
			tc.peers[ap.Addr()] = true
			tc.mu.Unlock()
		}
	}
	tc.http.Start()
	tc.URL = tc.http.URL + "/api/viewers"
	t.Cleanup(func() {
		tc.http.Close()
		s.Close()
	})
	return tc
}

func (tc *testCounter) distinctPeers() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.peers)
}

// TestRunSources: every viewer heartbeats from its own loopback address over its own
// keep-alive connection; the counter counts exactly Sources viewers; the results file
// decodes with vegeta's decoder into the same requests the report counted.
func TestRunSources(t *testing.T) {
	tc := startCounter(t, counter.Config{Store: counter.StoreSharded})
	var results bytes.Buffer
	rep, err := Run(context.Background(), Config{URL: tc.URL, Rate: 300, Duration: time.Second, Sources: 50, Results: &results})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Warmup != 50 || rep.WarmupErrors != 0 {
		t.Errorf("warm-up: %d heartbeats, %d errors; want one per viewer, no errors", rep.Warmup, rep.WarmupErrors)
	}
	if rep.Sent < 100 || rep.Metrics.Success != 1 {
		t.Fatalf("sent %d (want >= 100), success %v, errors %v", rep.Sent, rep.Metrics.Success, rep.Metrics.Errors)
	}
	if n := tc.Store().Count(); n != 50 {
		t.Errorf("counter saw %d viewers, want 50", n)
	}
	if n := tc.distinctPeers(); n != 50 {
		t.Errorf("%d distinct source addresses, want 50", n)
	}
	// One connection per viewer, more only if a viewer's previous heartbeat was still in
	// flight: far fewer than one per request.
	if c := tc.conns.Load(); c < 50 || c > 100 {
		t.Errorf("%d connections for 50 viewers and %d requests; want keep-alive, about one per viewer", c, rep.Sent)
	}
	if rep.MaxViewers != 50 || rep.LastViewers != 50 {
		t.Errorf("report says last %d, max %d viewers; want 50", rep.LastViewers, rep.MaxViewers)
	}
	if rep.First != netip.MustParseAddr("127.1.0.1") || rep.Last != netip.MustParseAddr("127.1.0.50") {
		t.Errorf("sources %v … %v", rep.First, rep.Last)
	}
	dec := vegeta.NewDecoder(&results)
	var n uint64
	for {
		var r vegeta.Result
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding result %d: %v", n, err)
		}
		if r.Code != 200 || !strings.Contains(string(r.Body), `"viewers"`) {
			t.Fatalf("result %d: %d %q", n, r.Code, r.Body)
		}
		n++
	}
	if n != rep.Sent {
		t.Errorf("results file holds %d results, report %d", n, rep.Sent)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Requests", "Latencies", "Success", "source addresses", "50 (127.1.0.1 … 127.1.0.50)", "Generator"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
}

// TestRunIDs: in IDs mode viewers are named by ?id= from one address.
func TestRunIDs(t *testing.T) {
	tc := startCounter(t, counter.Config{})
	rep, err := Run(context.Background(), Config{URL: tc.URL, Rate: 300, Duration: 500 * time.Millisecond, Sources: 30, IDs: true, NoWarmup: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent < 30 {
		t.Fatalf("sent only %d", rep.Sent)
	}
	if n := tc.Store().Count(); n != 30 {
		t.Errorf("counter saw %d viewers, want 30", n)
	}
	if n := tc.distinctPeers(); n != 1 {
		t.Errorf("%d source addresses in IDs mode, want 1", n)
	}
	if rep.Warmup != 0 {
		t.Errorf("NoWarmup, yet %d warm-up heartbeats", rep.Warmup)
	}
}

// TestRunBehind: a counter that never answers in time holds every worker; the generator
// cannot keep its schedule and says so.
func TestRunBehind(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	rep, err := Run(context.Background(), Config{URL: srv.URL + "/api/viewers", Rate: 1000, Duration: 300 * time.Millisecond,
		Sources: 5, Timeout: 100 * time.Millisecond, Workers: 1, MaxWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Behind || rep.Sent >= rep.Expected/2 {
		t.Fatalf("sent %d of %d expected, behind=%v; want behind", rep.Sent, rep.Expected, rep.Behind)
	}
	// The transport's deadline, not the release at cleanup, ended each request.
	if len(rep.Metrics.Errors) == 0 || !strings.Contains(rep.Metrics.Errors[0], "timeout") {
		t.Errorf("errors %q, want timeouts", rep.Metrics.Errors)
	}
	var text strings.Builder
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "BEHIND") {
		t.Errorf("report does not flag the run:\n%s", text.String())
	}
}

// TestRunInterrupted: cancelling stops the attack and still returns what was measured.
func TestRunInterrupted(t *testing.T) {
	tc := startCounter(t, counter.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var results countingWriter
	results.onWrite = func(total int) {
		if total > 4096 { // some results are in: stop
			cancel()
		}
	}
	rep, err := Run(ctx, Config{URL: tc.URL, Rate: 500, Duration: time.Minute, Sources: 10, Results: &results})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.Behind || rep.Sent == 0 || rep.Sent > 10_000 {
		t.Fatalf("interrupted=%v behind=%v sent=%d", rep.Interrupted, rep.Behind, rep.Sent)
	}
}

type countingWriter struct {
	total   int
	onWrite func(total int)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.total += len(p)
	w.onWrite(w.total)
	return len(p), nil
}

func TestPace(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		at   time.Duration
		want uint64
	}{
		{Config{Rate: 100, Duration: 10 * time.Second}, 10 * time.Second, 1000},              // constant
		{Config{Rate: 100, Duration: 10 * time.Second}, 2500 * time.Millisecond, 250},        // part way
		{Config{Rate: 100, RampTo: 300, Duration: 10 * time.Second}, 10 * time.Second, 2000}, // ramp up: mean 200/s
		{Config{Rate: 300, RampTo: 100, Duration: 10 * time.Second}, 10 * time.Second, 2000}, // ramp down
		{Config{Rate: 100, RampTo: 300, Duration: 10 * time.Second}, 5 * time.Second, 750},   // half way up: 100*5 + 20*25/2
		{Config{Rate: 100, RampTo: 100, Duration: 10 * time.Second}, 10 * time.Second, 1000}, // ramp to the same rate is constant
	} {
		_, expected := pace(tc.cfg)
		if got := expected(tc.at); got != tc.want {
			t.Errorf("%+v at %v: %d expected, want %d", tc.cfg, tc.at, got, tc.want)
		}
	}
}

func TestBatchPacer(t *testing.T) {
	p := batchPacer{start: 10_000, tick: time.Millisecond} // one hit due every 100 µs
	for _, tc := range []struct {
		elapsed time.Duration
		hits    uint64
		want    time.Duration
	}{
		{0, 0, time.Millisecond},                        // nothing due yet: sleep a tick, not 100 µs
		{time.Millisecond, 0, 0},                        // 10 due, none sent: send now
		{time.Millisecond, 9, 0},                        // the last of the batch
		{time.Millisecond, 10, time.Millisecond},        // batch sent: sleep a tick
		{time.Millisecond, 40, 3100 * time.Microsecond}, // ahead of the schedule: sleep until the next hit is due
	} {
		got, stop := p.Pace(tc.elapsed, tc.hits)
		if stop || got != tc.want {
			t.Errorf("Pace(%v, %d) = %v, %v; want %v", tc.elapsed, tc.hits, got, stop, tc.want)
		}
	}
	limited := batchPacer{start: 10_000, tick: time.Millisecond, limit: 3} // the warm-up's pacer
	if _, stop := limited.Pace(time.Second, 3); !stop {
		t.Error("a pacer with a limit of 3 did not stop after 3 hits")
	}
	if w, stop := limited.Pace(time.Second, 2); stop || w != 0 {
		t.Errorf("a limited pacer below its limit: %v, %v; want to send now", w, stop)
	}
	ramp := batchPacer{start: 100, slope: 40, tick: time.Millisecond}
	if r := ramp.Rate(5 * time.Second); r != 300 {
		t.Errorf("ramp rate at 5 s = %v, want 300", r)
	}
}

// TestRunRamp: a real ramp sends about the integral of its rate.
func TestRunRamp(t *testing.T) {
	tc := startCounter(t, counter.Config{})
	rep, err := Run(context.Background(), Config{URL: tc.URL, Rate: 100, RampTo: 500, Duration: time.Second, Sources: 20})
	if err != nil {
		t.Fatal(err)
	}
	// 300 expected over the second; allow for a slow, shared machine on both sides.
	if rep.Sent < 200 || rep.Sent > 320 {
		t.Errorf("ramp 100->500/s over 1 s sent %d, want about 300", rep.Sent)
	}
	var text strings.Builder
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "100/s ramping to 500/s") {
		t.Errorf("report does not describe the ramp:\n%s", text.String())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "nonsense"}, "URL"},
		{Config{URL: "http://192.0.2.1/api/viewers"}, "loopback"},                                       // source addresses need a loopback target
		{Config{URL: "https://127.0.0.1/api/viewers"}, "plain http"},                                    // no TLS in source mode
		{Config{URL: "http://127.0.0.1/", FirstSource: netip.MustParseAddr("10.0.0.1")}, "FirstSource"}, // not loopback
		{Config{URL: "http://127.0.0.1/", FirstSource: netip.MustParseAddr("::1")}, "FirstSource"},      // IPv6
		{Config{URL: "http://127.0.0.1/", Rate: -1}, "Rate"},                                            // negative rate
		{Config{URL: "http://127.0.0.1/", Workers: 10, MaxWorkers: 5}, "Workers"},                       // more workers than the maximum
		{Config{URL: "http://127.0.0.1/", Sources: 20_000_000}, "run out"},                              // more addresses than 127/8 has
	} {
		_, err := Run(context.Background(), tc.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v, want a ConfigError about %s", tc.cfg, err, tc.want)
		}
	}
	// IDs mode may target any host (nothing is sent here: the config is only checked).
	if _, err := withDefaults(Config{URL: "https://counter.example/api/viewers", IDs: true}); err != nil {
		t.Errorf("IDs mode to a remote https counter: %v", err)
	}
}

func TestSourceAddrs(t *testing.T) {
	got, err := sourceAddrs(netip.MustParseAddr("127.1.0.253"), 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.1.0.253", "127.1.0.254", "127.1.1.1", "127.1.1.2"} // .255 and .0 skipped
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("sourceAddrs = %v, want %v", got, want)
		}
	}
	if _, err := sourceAddrs(netip.MustParseAddr("127.255.255.250"), 10); err == nil {
		t.Error("ran past 127.255.255.255 without an error")
	}
}

// TestTransportRetriesStaleConn: a keep-alive connection the server dropped while idle
// is replaced transparently, once.
func TestTransportRetriesStaleConn(t *testing.T) {
	tc := startCounter(t, counter.Config{})
	client := &http.Client{Transport: newSourceTransport([]netip.Addr{netip.MustParseAddr("127.1.2.3")}, time.Second)}
	get := func() {
		t.Helper()
		resp, err := client.Get(tc.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	get()
	get()
	if c := tc.conns.Load(); c != 1 {
		t.Fatalf("two sequential heartbeats used %d connections, want 1 (keep-alive)", c)
	}
	tc.http.CloseClientConnections() // the server drops the idle connection
	get()
	if c := tc.conns.Load(); c != 2 {
		t.Fatalf("%d connections after the server dropped one, want 2", c)
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if !tc.peers[netip.MustParseAddr("127.1.2.3")] || len(tc.peers) != 1 {
		t.Errorf("peers %v, want only 127.1.2.3", tc.peers)
	}
}

// TestTransportConnectionClose: a response that says Connection: close is not reused.
func TestTransportConnectionClose(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, `{"viewers":1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: newSourceTransport([]netip.Addr{netip.MustParseAddr("127.1.2.4")}, time.Second)}
	for i := 0; i < 3; i++ {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if c := conns.Load(); c != 3 {
		t.Errorf("%d connections for 3 Connection: close responses, want 3", c)
	}
	if _, err := client.Get("https://127.0.0.1/"); !errors.Is(err, errScheme) {
		t.Errorf("https through the source transport: %v, want %v", err, errScheme)
	}
}

// TestTransportConnsPerViewer: a viewer never holds more than MaxConnsPerViewer
// connections; a heartbeat beyond that waits for one, and gives up at its deadline.
func TestTransportConnsPerViewer(t *testing.T) {
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, `{"viewers":1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: newSourceTransport([]netip.Addr{netip.MustParseAddr("127.1.2.5")}, 30*time.Second)}
	const n = MaxConnsPerViewer + 2
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := client.Get(srv.URL)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < MaxConnsPerViewer; i++ {
		<-arrived
	}
	select {
	case <-arrived:
		t.Fatalf("a heartbeat got past the %d-connection limit", MaxConnsPerViewer)
	default:
	}
	close(release) // the held ones answer; the waiting ones reuse their connections
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if c := conns.Load(); c != MaxConnsPerViewer {
		t.Errorf("%d connections for %d heartbeats from one viewer, want %d", c, n, MaxConnsPerViewer)
	}

	// With every connection held past the deadline, a waiting heartbeat gives up at its
	// deadline instead of waiting for ever (this test would hang otherwise).
	short := newSourceTransport([]netip.Addr{netip.MustParseAddr("127.1.2.6")}, 300*time.Millisecond)
	hold := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hold }))
	defer slow.Close()
	defer close(hold) // before slow.Close, which waits for the handlers
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, slow.URL, nil)
			_, err := short.RoundTrip(req)
			results <- err
		}()
	}
	for i := 0; i < n; i++ {
		err := <-results
		var ne net.Error
		if !errors.Is(err, errNoSlot) && !(errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("heartbeat to a server that never answers: %v, want a timeout", err)
		}
	}
}

func TestViewersIn(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int
		ok   bool
	}{
		{`{"viewers":42}`, 42, true},                   // the counter's answer
		{`{"viewers": 7}` + "\n", 7, true},             // with a space
		{`{"error":"id: ..."}`, 0, false},              // an error body
		{`{"viewers":}`, 0, false},                     // no number
		{`{"viewers":99999999999999999999}`, 0, false}, // overflow
		{``, 0, false},                                 // empty
	} {
		n, ok := viewersIn([]byte(tc.body))
		if n != tc.want || ok != tc.ok {
			t.Errorf("viewersIn(%q) = %d, %v; want %d, %v", tc.body, n, ok, tc.want, tc.ok)
		}
	}
}

func FuzzViewersIn(f *testing.F) {
	for _, s := range []string{`{"viewers":42}`, `{"viewers": 7}`, `"viewers":-1`, `"viewers":`, `x"viewers":1e9`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, ok := viewersIn(body)
		if ok && (n < 0 || !bytes.Contains(body, []byte(`"viewers":`))) {
			t.Fatalf("viewersIn(%q) = %d", body, n)
		}
	})
}
