package k6

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	if k6Dir != "" {
		os.RemoveAll(k6Dir)
	}
	os.Exit(code)
}

// The k6 binary with the extension, built once per test process by the same script
// `make k6` runs (the xk6 procedure; cached across runs, see loadgen/k6/build.sh).
var (
	k6Once sync.Once
	k6Dir  string
	k6Bin  string
	k6Err  error
	k6Log  []byte
)

func buildK6(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds k6 with the extension (about 2.5 min the first time); -short skips it")
	}
	k6Once.Do(func() {
		if k6Dir, k6Err = os.MkdirTemp("", "stampede-k6-test-"); k6Err != nil {
			return
		}
		k6Bin = filepath.Join(k6Dir, "k6")
		cmd := exec.Command("bash", filepath.Join(repoRoot(), "loadgen", "k6", "build.sh"), k6Bin)
		cmd.Dir = repoRoot()
		k6Log, k6Err = cmd.CombinedOutput()
		t.Logf("%s", strings.TrimSpace(string(k6Log)))
	})
	if k6Err != nil {
		t.Fatalf("building k6 with the extension: %v\n%s", k6Err, k6Log)
	}
	return k6Bin
}

// repoRoot is the repository root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// startServer runs `stampede ARGS` (a server listening on 127.0.0.1:0) and returns the
// address it says it listens on.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(testbin.Stampede(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, after, ok := strings.Cut(sc.Text(), " addr="); ok {
				addr, _, _ := strings.Cut(after, " ")
				found <- addr
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case addr := <-found:
		return addr
	case <-time.After(30 * time.Second):
		t.Fatalf("stampede %s did not say where it listens", strings.Join(args, " "))
		return ""
	}
}

// relay is a local origin, a mirror of it and a viewer counter, each a child process.
type relay struct {
	origin, mirror, counter string // host:port
}

func startRelay(t *testing.T) relay {
	t.Helper()
	var r relay
	r.origin = startServer(t, "origin", "--listen", "127.0.0.1:0", "--epoch", "-30s")
	r.mirror = startServer(t, "mirror", "--listen", "127.0.0.1:0", "--upstream", "http://"+r.origin)
	r.counter = startServer(t, "counter", "--listen", "127.0.0.1:0")
	return r
}

// k6Result is one k6 run.
type k6Result struct {
	code    int
	summary summary
	output  string
}

// summary is k6's --summary-export: per metric its statistics and, for each threshold
// on it, whether the threshold was crossed (true: failed).
type summary struct {
	Metrics map[string]struct {
		Count      *float64        `json:"count"`
		Avg        *float64        `json:"avg"`
		Med        *float64        `json:"med"`
		Max        *float64        `json:"max"`
		P99        *float64        `json:"p(99)"`
		Thresholds map[string]bool `json:"thresholds"`
	} `json:"metrics"`
}

// k6Run is one `k6 run`.
type k6Run struct {
	script   string            // path, relative to this directory
	settings map[string]string // the script's -e settings
	args     []string          // more k6 arguments
	env      []string          // more environment (K6_* output settings)
}

// runK6 runs `k6 run` (in this directory, so the scripts' imports resolve) and returns
// its exit code, summary and output. Usage reports to the internet are off: everything
// here stays on loopback.
func runK6(t *testing.T, run k6Run) k6Result {
	t.Helper()
	bin := buildK6(t)
	export := filepath.Join(t.TempDir(), "summary.json")
	argv := []string{"run", "--no-usage-report", "--no-color", "--summary-export", export}
	for k, v := range run.settings {
		argv = append(argv, "-e", k+"="+v)
	}
	argv = append(append(argv, run.args...), run.script)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Env = append(append(os.Environ(), "K6_NO_USAGE_REPORT=true"), run.env...)
	out, err := cmd.CombinedOutput()
	res := k6Result{output: string(out)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("k6 %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	if b, err := os.ReadFile(export); err == nil {
		if err := json.Unmarshal(b, &res.summary); err != nil {
			t.Fatalf("k6's summary export: %v\n%s", err, b)
		}
	}
	return res
}

// metric returns a summary statistic, failing the test when it is absent.
func (r k6Result) metric(t *testing.T, name, stat string) float64 {
	t.Helper()
	m, ok := r.summary.Metrics[name]
	if !ok {
		t.Fatalf("%s is not in k6's summary\n%s", name, r.output)
	}
	var v *float64
	switch stat {
	case "count":
		v = m.Count
	case "avg":
		v = m.Avg
	case "med":
		v = m.Med
	case "max":
		v = m.Max
	case "p(99)":
		v = m.P99
	}
	if v == nil {
		t.Fatalf("%s has no %s in k6's summary", name, stat)
	}
	return *v
}

// crossed reports whether the threshold expr on metric failed.
func (r k6Result) crossed(t *testing.T, metric, expr string) bool {
	t.Helper()
	failed, ok := r.summary.Metrics[metric].Thresholds[expr]
	if !ok {
		t.Fatalf("no threshold %q on %s in k6's summary\n%s", expr, metric, r.output)
	}
	return failed
}

// TestBaselineScriptPassesAndExportsMetrics runs baseline.js for about 15 s: 20 viewers
// arriving over 2 s, each watching 13 s through a stampede mirror, heartbeating a
// counter, each VU dialing from its own address (--local-ips). k6 exits 0 with every
// threshold passing, and the hls_* metrics are in its summary with the figures a healthy
// relay gives. The viewers' bytes count as k6's data_received (they went through the
// VU's dialer), and the counter saw 20 distinct viewers (the dialer's --local-ips
// source addresses).
func TestBaselineScriptPassesAndExportsMetrics(t *testing.T) {
	t.Parallel()
	buildK6(t) // first: -short skips before any server starts
	const viewers = 20
	r := startRelay(t)
	res := runK6(t, k6Run{script: "baseline.js", settings: map[string]string{
		"URL": "http://" + r.mirror + "/live/master.m3u8", "COUNTER": "http://" + r.counter,
		"VIEWERS": strconv.Itoa(viewers), "RAMP": "2s", "WATCH": "13s",
	}, args: []string{"--local-ips", "127.1.0.1-127.1.0.254"}})
	if res.code != 0 {
		t.Fatalf("k6 exited %d, want 0\n%s", res.code, res.output)
	}
	for metric, expr := range map[string]string{
		"hls_stalls": "count==0", "hls_errors": "count==0", "hls_segment_duration": "p(99)<500",
		"hls_startup_duration": "p(90)<4000", "dropped_iterations": "count==0",
	} {
		if res.crossed(t, metric, expr) {
			t.Errorf("threshold %s on %s failed in a passing run", expr, metric)
		}
	}
	if n := res.metric(t, "iterations", "count"); n != viewers {
		t.Errorf("%v sessions, want %d", n, viewers)
	}
	// One start-up and one rebuffer ratio per session; at least the 3 segments of the
	// start-up buffer each (500 kbit/s × 2 s = 125,000 bytes a segment).
	for metric, want := range map[string]float64{
		"hls_startup_duration": viewers, "hls_rebuffer_ratio": viewers,
	} {
		if n := res.metric(t, metric, "count"); n != want {
			t.Errorf("%s: %v samples, want %v", metric, n, want)
		}
	}
	segs := res.metric(t, "hls_segment_duration", "count")
	if segs < 3*viewers || res.metric(t, "hls_playlist_duration", "count") < 2*viewers {
		t.Errorf("%v segments, %v playlists measured for %d viewers", segs, res.metric(t, "hls_playlist_duration", "count"), viewers)
	}
	if got := res.metric(t, "hls_live_latency", "count"); got != segs {
		t.Errorf("%v live latencies for %v segments", got, segs)
	}
	if med := res.metric(t, "hls_live_latency", "med"); med < 4000 || med > 12000 {
		t.Errorf("live latency median %.0f ms, want 3 target durations behind live (6-8 s)", med)
	}
	if s, rr := res.metric(t, "hls_stalls", "count"), res.metric(t, "hls_rebuffer_ratio", "max"); s != 0 || rr != 0 {
		t.Errorf("%v stalls, rebuffer ratio max %v on a healthy relay", s, rr)
	}
	if got, want := res.metric(t, "data_received", "count"), segs*125_000; got < want {
		t.Errorf("data_received %v bytes, less than the %v of the segments measured: the viewers' traffic is not k6's", got, want)
	}
	// Without --local-ips every viewer would come from 127.0.0.1: one viewer. (A
	// heartbeat delayed past the counter's 10 s expiry would count a viewer anew.)
	if n := counterMetric(t, r.counter, `stampede_counter_heartbeats_total{result="new"}`); n < viewers {
		t.Errorf("the counter saw %v distinct viewers, want %d (one source address per VU)", n, viewers)
	}
}

// TestFlashCrowdScriptFailsItsThresholdsWithExit99 runs flash-crowd.js (20 viewers within
// one second, ramping-arrival-rate) with its segment p99 threshold set to an impossible
// 0.001 ms and a dead mirror in the list: k6 exits 99, k6's code for crossed
// thresholds. The segment threshold failed and so did the errors one — every viewer's
// round-trip probe of the dead mirror was refused, one hls_errors each — while the
// stalls threshold held: nobody stalled, since each viewer played from the live mirror.
func TestFlashCrowdScriptFailsItsThresholdsWithExit99(t *testing.T) {
	t.Parallel()
	buildK6(t) // first: -short skips before any server starts
	const viewers = 20
	r := startRelay(t)
	dead := deadAddr(t)
	res := runK6(t, k6Run{script: "flash-crowd.js", settings: map[string]string{
		"URL":     "http://" + r.mirror + "/live/master.m3u8",
		"MIRRORS": "http://" + r.mirror + ",http://" + dead,
		"VIEWERS": strconv.Itoa(viewers), "WATCH": "10s", "SEGMENT_P99_MS": "0.001",
	}})
	if res.code != 99 {
		t.Fatalf("k6 exited %d, want 99 (thresholds crossed)\n%s", res.code, res.output)
	}
	for _, c := range []struct {
		metric, expr string
		failed       bool
	}{
		{"hls_segment_duration", "p(99)<0.001", true},
		{"hls_errors", "count==0", true},
		{"hls_stalls", "count==0", false},
		{"hls_startup_duration", "p(90)<4000", false},
		{"dropped_iterations", "count==0", false},
	} {
		if got := res.crossed(t, c.metric, c.expr); got != c.failed {
			t.Errorf("threshold %s on %s: failed %v, want %v", c.expr, c.metric, got, c.failed)
		}
	}
	if n := res.metric(t, "iterations", "count"); n != viewers {
		t.Errorf("%v sessions, want %d", n, viewers)
	}
	if n := res.metric(t, "hls_errors", "count"); n < viewers {
		t.Errorf("%v errors, want at least %d: one refused probe of the dead mirror per viewer", n, viewers)
	}
}

// TestWatchErrorsReachTheScript: watch() with a misspelt player option throws an error
// naming it (sobek's conversion of a nested object reaches the option parser intact),
// and calling it in the init context fails the run before it starts (k6's exit code
// 107, a script exception).
func TestWatchErrorsReachTheScript(t *testing.T) {
	t.Parallel()
	buildK6(t) // first: -short skips before any server starts
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad-option.js", `import stampede from 'k6/x/stampede';
export default function () {
  try {
    stampede.watch({ url: 'http://127.0.0.1:9/live/master.m3u8', duration: '1s', player: { client: 'net/http', maxBuffer: '10s' } });
  } catch (e) {
    console.log('caught: ' + e);
    return;
  }
  throw new Error('watch() accepted a misspelt option');
}
`)
	res := runK6(t, k6Run{script: bad, args: []string{"--iterations", "1"}})
	if res.code != 0 || !strings.Contains(res.output, "caught: GoError: stampede.watch: options.player.maxBuffer: unknown player option") {
		t.Errorf("k6 exited %d; want 0 and the error naming options.player.maxBuffer\n%s", res.code, res.output)
	}
	initCall := write("init-call.js", `import stampede from 'k6/x/stampede';
stampede.watch({ url: 'http://127.0.0.1:9/live/master.m3u8' });
export default function () {}
`)
	res = runK6(t, k6Run{script: initCall, args: []string{"--iterations", "1"}})
	if res.code != 107 || !strings.Contains(res.output, "not in the init context") {
		t.Errorf("k6 exited %d; want 107 (a script exception) saying watch() is not for the init context\n%s", res.code, res.output)
	}
}

// deadAddr is a loopback address nothing listens on: connections to it are refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// counterMetric reads one sample from the counter's /metrics.
func counterMetric(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s not in the counter's metrics", series)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", series, err))
	}
	return v
}
