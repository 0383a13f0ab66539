package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

// topologyConfig is a small relay of the real stampede servers on a subnet of its own.
func topologyConfig(t *testing.T) TopologyConfig {
	t.Helper()
	n := <-subnetSeq
	subnetSeq <- n + 1
	return TopologyConfig{
		Binary: testbin.Stampede(t),
		LogDir: t.TempDir(),
		Subnet: "127.0." + strconv.Itoa(n),
		Labels: map[string]string{"run": "r1", "tuning": "t1"},
		Origin: ServerSpec{Args: []string{"--segment-duration", "1s", "--window", "6", "--epoch", "-6s"}},
		Grace:  2 * time.Second,
	}
}

func startTopology(t *testing.T, cfg TopologyConfig) *Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := StartTopology(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Close() })
	return topo
}

// fetch GETs url with a fresh connection and returns the status, body and time taken.
func fetch(t *testing.T, url string) (int, string, time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

// pidsOf lists every process of the topology now running.
func pidsOf(topo *Topology) map[int]string {
	out := map[int]string{}
	for _, p := range topo.Supervisor().Processes() {
		if pid := p.Pid(); pid != 0 {
			out[pid] = startTimeOf(pid)
			for _, c := range childrenOf(pid) {
				out[c] = startTimeOf(c)
			}
		}
	}
	return out
}

func TestTopologyRunsTheRelay(t *testing.T) {
	t.Parallel()
	cfg := topologyConfig(t)
	cfg.Mirrors = []MirrorSpec{
		{}, // mirror-1: direct
		{RTT: 60 * time.Millisecond, UpstreamRTT: 20 * time.Millisecond}, // mirror-2: far away
	}
	cfg.Counter = &ServerSpec{Args: []string{"--store", "sharded"}}
	cfg.OriginExposed, cfg.OriginRTT, cfg.OriginUplink = true, 10*time.Millisecond, 50e6
	topo := startTopology(t, cfg)

	urls := topo.ViewerURLs()
	if len(urls) != 3 {
		t.Fatalf("viewer URLs %v: want 2 mirrors and the exposed origin", urls)
	}
	// Every route serves the stream; the far mirror costs its round trips (a new
	// connection: one for the handshake, one for the request).
	for i, u := range urls {
		code, body, took := fetch(t, u+"/live/master.m3u8")
		if code != 200 || !strings.HasPrefix(body, "#EXTM3U") {
			t.Errorf("%s: %d %q", u, code, body)
		}
		if i == 1 && took < 100*time.Millisecond {
			t.Errorf("mirror-2 answered in %v through a 60ms link", took)
		}
	}
	if u := topo.Mirrors()[0].ViewerURL(); u != topo.Mirrors()[0].Process.URL() {
		t.Errorf("mirror-1 has no round trip but viewers reach it at %s, not %s", u, topo.Mirrors()[0].Process.URL())
	}
	// Labels reach every server's metrics.
	for _, p := range topo.Supervisor().Processes() {
		_, body, _ := fetch(t, p.URL()+"/metrics")
		if !strings.Contains(body, `run="r1"`) || !strings.Contains(body, `tuning="t1"`) {
			t.Errorf("%s /metrics lacks the run and tuning labels", p.Name())
		}
	}
	// The links are the delay-fault targets.
	links := topo.Links()
	if len(links) != 2 || links["mirror-2"].Delay() != 20*time.Millisecond {
		t.Errorf("links %v: want mirror-1 and mirror-2 (20ms)", links)
	}

	s := topo.NewSampler()
	before := s.Sample(context.Background())
	for range 5 {
		fetch(t, urls[0]+"/live/500k/index.m3u8")
	}
	if code, _, _ := fetch(t, topo.CounterURL()+"/api/viewers"); code != 200 {
		t.Errorf("counter: %d", code)
	}
	after := s.Sample(context.Background())
	m1, m0 := after.Procs["mirror-1"], before.Procs["mirror-1"]
	if !m1.Up || m1.Requests-m0.Requests < 5 || m1.Upstream < 1 || m1.OpenFDs <= 0 || m1.MaxFDs <= 0 || m1.Kind != MirrorStampede {
		t.Errorf("mirror-1 figures %+v (before %+v): want 5 more requests, an upstream fetch, FDs", m1, m0)
	}
	if o := after.Procs["origin"]; !o.Up || o.Requests < 1 || o.SegmentsBuilt < 0 || o.Pid != topo.Origin().Pid() {
		t.Errorf("origin figures %+v", o)
	}
	if c := after.Procs["counter"]; !c.Up || c.Viewers != 1 || c.Requests < 1 {
		t.Errorf("counter figures %+v: want 1 viewer after one heartbeat", c)
	}

	// A restarted server starts its counters from zero; the totals do not go back.
	m := topo.Mirrors()[0].Process
	if err := m.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	fetch(t, urls[0]+"/live/500k/index.m3u8")
	again := s.Sample(context.Background())
	if r := again.Procs["mirror-1"]; r.Requests <= m1.Requests || r.Pid == m1.Pid {
		t.Errorf("after a restart mirror-1 totals %v (pid %d), before %v (pid %d): want more", r.Requests, r.Pid, m1.Requests, m1.Pid)
	}

	pids := pidsOf(topo)
	if len(pids) != 4 {
		t.Errorf("running pids %v: want origin, 2 mirrors, counter", pids)
	}
	if err := topo.Close(); err != nil {
		t.Error(err)
	}
	waitGone(t, pids, "closed topology")
}

func TestTopologyNginxMirror(t *testing.T) {
	t.Parallel()
	cfg := topologyConfig(t)
	cfg.Mirrors = []MirrorSpec{{Kind: MirrorNginx, ServerSpec: ServerSpec{Nofile: 256}}}
	topo := startTopology(t, cfg)
	m := topo.Mirrors()[0]
	if m.Kind != MirrorNginx || m.NginxDir == "" {
		t.Fatalf("mirror %+v: want an nginx mirror", m)
	}
	s := topo.NewSampler()
	before := s.Sample(context.Background())
	for range 4 {
		if code, _, _ := fetch(t, m.ViewerURL()+"/live/500k/index.m3u8"); code != 200 {
			t.Fatalf("nginx mirror answered %d", code)
		}
	}
	after := s.Sample(context.Background())
	f, f0 := after.Procs["mirror-1"], before.Procs["mirror-1"]
	if !f.Up || f.Kind != MirrorNginx || f.MaxFDs != 256 || f.OpenFDs <= 0 {
		t.Errorf("nginx figures %+v: want up, nofile 256, open FDs", f)
	}
	// nginx counts every request, ours excluded; each upstream request is one
	// connection through the link.
	if got := f.Requests - f0.Requests; got != 4 {
		t.Errorf("nginx requests grew by %v, want 4", got)
	}
	if f.Upstream < 1 || f.Upstream != float64(m.Upstream.Stats().Accepted) {
		t.Errorf("upstream requests %v, link connections %d", f.Upstream, m.Upstream.Stats().Accepted)
	}
	if _, err := filepath.Abs(m.ErrorLog()); err != nil || !strings.HasSuffix(m.ErrorLog(), "error.log") {
		t.Errorf("error log %q", m.ErrorLog())
	}
	pids := pidsOf(topo)
	if len(pids) < 3 { // origin, nginx master, at least one worker
		t.Errorf("running pids %v: want origin, nginx master and worker", pids)
	}
	topo.Close()
	waitGone(t, pids, "closed topology")
}

func TestTopologyStartFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	cfg := topologyConfig(t)
	cfg.Mirrors = []MirrorSpec{{}, {ServerSpec: ServerSpec{Args: []string{"--no-such-flag"}}}}
	var mu sync.Mutex // protects seen
	seen := map[int]string{}
	cfg.OnEvent = func(e Event) {
		if e.Kind == EventStarted {
			var pid int
			if _, err := fmt.Sscanf(e.Detail, "pid %d", &pid); err == nil {
				mu.Lock()
				seen[pid] = ""
				mu.Unlock()
			}
		}
	}
	_, err := StartTopology(context.Background(), cfg)
	mu.Lock()
	defer mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "mirror-2") {
		t.Fatalf("err = %v, want mirror-2's failure", err)
	}
	if len(seen) < 3 {
		t.Errorf("started %v: want origin and both mirrors to have been started", seen)
	}
	waitGone(t, seen, "failed topology")
}

func TestCounterTotalsSurviveResets(t *testing.T) {
	// Each row: raw readings of one counter, and the total after the last.
	for _, tc := range []struct {
		name string
		raw  []float64
		want float64
	}{
		{"grows", []float64{0, 5, 9}, 9},
		{"starts above zero", []float64{3, 5}, 5},          // counted from the first reading
		{"restart drops it", []float64{0, 10, 2, 4}, 14},   // 10, then a new run's 4
		{"restart to exactly zero", []float64{7, 0, 1}, 8}, // 7, then 1
		{"flat", []float64{4, 4, 4}, 4},                    // no change, no growth
	} {
		c := NewCounters()
		for _, v := range tc.raw {
			c.Add("x", v)
		}
		if got := c.Total("x"); got != tc.want {
			t.Errorf("%s: total %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// Each row: a /proc/<pid>/stat line and utime+stime in seconds (or an error).
	for _, tc := range []struct {
		line string
		want float64
		bad  bool
	}{
		{"42 (stampede) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 123 0 0", 3, false},
		{"42 (a b) c)) R 1 42 42 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 1 0 0", 0.02, false}, // ')' in the name
		{"42 stampede S 1", 0, true},                        // no parentheses
		{"42 (x) S 1 2 3", 0, true},                         // too short
		{"42 (x) S 1 42 42 0 -1 0 0 0 0 0 -5 1 0", 0, true}, // negative time
	} {
		got, err := parseStatCPU(tc.line)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseStatCPU(%q) = %v, %v; want %v (error %v)", tc.line, got, err, tc.want, tc.bad)
		}
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add("42 (stampede) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 123 0 0")
	f.Add("1 ()) R")
	f.Add(")")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseStatCPU(s)
		if err == nil && v < 0 {
			t.Errorf("negative CPU time %v from %q", v, s)
		}
	})
}
