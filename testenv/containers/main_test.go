package containers

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/testenv/local"
)

// noDaemon is why the Docker tests skip (nil: a daemon answers).
var noDaemon error

// healthClient is the tests' own probe. It never reuses connections: a probe must not
// hold a descriptor of a server whose limit a test lowered.
var healthClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext},
}

// TestMain runs the suite, then removes the image and asserts that nothing labelled
// with this process's session is left in Docker: no container, network or image
// (intermediate layers included). A leftover fails the suite.
func TestMain(m *testing.M) {
	ctx := context.Background()
	noDaemon = Available(ctx)
	code := m.Run()
	if noDaemon == nil {
		if err := sharedImage.remove(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: removing the test image:", err)
			code = 1
		}
		left, err := FindSession(ctx, Session())
		switch {
		case err != nil:
			fmt.Fprintln(os.Stderr, "FAIL: listing what the suite left in Docker:", err)
			code = 1
		case !left.Empty():
			fmt.Fprintf(os.Stderr, "FAIL: after the suite, Docker still holds objects of session %s: %s\n", Session(), left)
			SweepSession(ctx, Session())
			code = 1
		default:
			fmt.Printf("cleanup: no container, network or image of session %s remains\n", Session())
		}
	}
	testbin.Cleanup()
	os.Exit(code)
}

// needDocker skips, saying why, when no Docker daemon answers — or fails, when
// STAMPEDE_REQUIRE_DOCKER is set (CI, where a daemon must answer: a broken Docker
// setup must not turn into skipped tests).
func needDocker(t *testing.T) {
	t.Helper()
	if noDaemon != nil && os.Getenv("STAMPEDE_REQUIRE_DOCKER") != "" {
		t.Fatalf("STAMPEDE_REQUIRE_DOCKER is set but no Docker daemon answers: %v", noDaemon)
	}
	if noDaemon != nil {
		t.Skipf("SKIP: no Docker daemon answers, so the containers tests cannot run (they run in `make test` on a machine with Docker): %v", noDaemon)
	}
}

// sharedImage is built once per test process.
var sharedImage imageOnce

type imageOnce struct {
	once sync.Once
	img  *Image
	err  error
}

func (o *imageOnce) get(t *testing.T) *Image {
	t.Helper()
	needDocker(t)
	bin := testbin.Stampede(t)
	o.once.Do(func() {
		start := time.Now()
		o.img, o.err = BuildImage(context.Background(), ImageConfig{Binary: bin, Repo: "stampede-test"})
		if o.err == nil {
			fmt.Printf("built %s in %.1fs\n", o.img.Ref, time.Since(start).Seconds())
		}
	})
	if o.err != nil {
		t.Fatalf("building the image: %v", o.err)
	}
	return o.img
}

func (o *imageOnce) remove(ctx context.Context) error {
	if o.img == nil {
		return nil
	}
	return o.img.Remove(ctx)
}

// startTopology starts spec with the shared image and closes it at the end of t,
// asserting that Close left nothing of the topology behind.
func startTopology(t *testing.T, spec Spec) *Topology {
	t.Helper()
	spec.Image = sharedImage.get(t)
	if spec.LogDir == "" {
		spec.LogDir = t.TempDir()
	}
	spec.OnEvent = func(e local.Event) { t.Log(e.String()) }
	spec.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	topo, err := StartTopology(ctx, spec)
	if err != nil {
		t.Fatalf("StartTopology: %v", err)
	}
	t.Logf("topology %s up in %.1fs", topo.ID(), time.Since(start).Seconds())
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		left, err := find(context.Background(), topo.d, LabelTopology+"="+topo.ID())
		if err != nil || !left.Empty() {
			t.Errorf("after Close, the topology left %s (err %v)", left, err)
		}
	})
	return topo
}

// viewers runs `stampede viewers` (the shipped binary, no race detector) against a
// mirror and returns its summary.
type viewers struct {
	name string
	cmd  *exec.Cmd
	out  string
	log  strings.Builder
	done chan error
}

func startViewers(t *testing.T, name string, args ...string) *viewers {
	t.Helper()
	v := &viewers{name: name, out: filepath.Join(t.TempDir(), name), done: make(chan error, 1)}
	args = append([]string{"viewers", "--out", v.out, "--run", name}, args...)
	v.cmd = exec.Command(testbin.Stampede(t), args...)
	v.cmd.Stdout, v.cmd.Stderr = &syncWriter{b: &v.log}, &syncWriter{b: &v.log}
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start viewers %s: %v", name, err)
	}
	go func() { v.done <- v.cmd.Wait() }()
	t.Cleanup(func() {
		if v.cmd.ProcessState == nil {
			v.cmd.Process.Kill()
			<-v.done
		}
	})
	return v
}

func (v *viewers) wait(t *testing.T, limit time.Duration) *report.Tuning {
	t.Helper()
	select {
	case err := <-v.done:
		if err != nil {
			t.Fatalf("viewers %s: %v\n%s", v.name, err, v.log.String())
		}
	case <-time.After(limit):
		v.cmd.Process.Kill()
		t.Fatalf("viewers %s still running after %s\n%s", v.name, limit, v.log.String())
	}
	s, err := report.Read(filepath.Join(v.out, report.SummaryFile))
	if err != nil {
		t.Fatalf("viewers %s: %v\n%s", v.name, err, v.log.String())
	}
	tu := s.Tunings[0]
	if tu.Generator.Bound {
		t.Fatalf("viewers %s: the load generator was bound, the run is invalid\n%s", v.name, v.log.String())
	}
	var switches, resyncs int64
	failed := tu.Viewers.Failed
	if p := tu.Player; p != nil {
		switches, resyncs = p.MirrorSwitches, p.Resyncs
	}
	t.Logf("viewers %s: peak %d, sessions %d, requests %d playlists %d segments, errors %d %v, stalls %d (%.1f s, %.0f%% of sessions), segment p99 %.0f ms, mirror switches %d, resyncs %d, failed sessions %d",
		v.name, tu.Viewers.Peak, tu.Viewers.Sessions, tu.Requests.Playlist, tu.Requests.Segment, tu.Errors.Total, nonZero(tu.Errors.ByClass),
		tu.Stalls.Count, tu.Stalls.Seconds, 100*tu.Stalls.SessionsWithStall, tu.LatencyMs.Segment.P99, switches, resyncs, failed)
	return &tu
}

type syncWriter struct {
	mu sync.Mutex // protects b
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// metrics scrapes a Prometheus text endpoint, retrying until the deadline (a server
// out of file descriptors may shed the first tries).
func metrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := scrape(url)
		if err == nil {
			return m
		}
		select {
		case <-deadline:
			t.Fatalf("scrape %s: %v", url, err)
		case <-tick.C:
		}
	}
}

// scrape reads samples as "name{labels}" → value.
func scrape(url string) (map[string]float64, error) {
	resp, err := healthClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// sum adds the samples of metric name whose labels contain every one of want
// (`result="stale"`).
func sum(m map[string]float64, name string, want ...string) float64 {
	total := 0.0
	for k, v := range m {
		n, labels, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(labels, w)
		}
		if ok {
			total += v
		}
	}
	return total
}
