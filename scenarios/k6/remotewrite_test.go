package k6

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoteWriteFeedsTheStampedeNames runs baseline.js with k6's Prometheus
// remote-write output into Debian's real Prometheus loaded with
// loadgen/k6/prometheus/k6-stampede.rules.yml: the k6 run appears under the
// stampede_viewers_* names the dashboards read, with the run and tuning labels from
// k6's --tag, the counts matching what k6 measured (5 viewers, one refused probe of a
// dead mirror each, no stall), the durations as native histograms and as the classic
// _bucket series the dashboards' histogram_quantile panels read.
func TestRemoteWriteFeedsTheStampedeNames(t *testing.T) {
	t.Parallel()
	buildK6(t) // first: -short skips before any server starts
	const viewers = 5
	prom := startPrometheus(t)
	r := startRelay(t)
	res := runK6(t, k6Run{
		script: "baseline.js",
		settings: map[string]string{
			"URL":     "http://" + r.mirror + "/live/master.m3u8",
			"MIRRORS": "http://" + r.mirror + ",http://" + deadAddr(t),
			"VIEWERS": strconv.Itoa(viewers), "RAMP": "2s", "WATCH": "6s",
		},
		// The dead mirror's errors would cross hls_errors' threshold: not what is tested.
		args: []string{"--no-thresholds", "-o", "experimental-prometheus-rw", "--tag", "run=k6-e2e", "--tag", "tuning=rw"},
		env: []string{
			"K6_PROMETHEUS_RW_SERVER_URL=" + prom + "/api/v1/write",
			"K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM=true",
			"K6_PROMETHEUS_RW_PUSH_INTERVAL=1s",
		},
	})
	if res.code != 0 {
		t.Fatalf("k6 exited %d\n%s", res.code, res.output)
	}
	segs := res.metric(t, "hls_segment_duration", "count")
	received := res.metric(t, "data_received", "count")
	sel := `{run="k6-e2e",tuning="rw"}`
	for _, c := range []struct {
		query string
		ok    func(float64) bool
		want  string
	}{
		{"stampede_viewers_target" + sel, eq(viewers), fmt.Sprint(viewers)},
		{"stampede_viewers_stalls_total" + sel, eq(0), "0"},
		{`stampede_viewers_errors_total{run="k6-e2e",kind="ping",class="refused"}`, eq(viewers), fmt.Sprint(viewers)},
		{"histogram_count(stampede_viewers_startup_seconds" + sel + ")", eq(viewers), fmt.Sprint(viewers)},
		{`histogram_count(stampede_viewers_request_duration_seconds{run="k6-e2e",kind="segment"})`, eq(segs), fmt.Sprint(segs)},
		{`histogram_count(stampede_viewers_request_duration_seconds{run="k6-e2e",kind="playlist"})`, func(v float64) bool { return v >= 2*viewers }, ">= 2 per viewer"},
		{`histogram_quantile(0.5, stampede_viewers_live_latency_seconds` + sel + `)`, func(v float64) bool { return v > 4 && v < 12 }, "6-8 s"},
		{`stampede_viewers_received_bytes_total{run="k6-e2e",kind="all"}`, eq(received), fmt.Sprint(received)},
		// The classic form the dashboards read (histogram_quantile over _bucket by le).
		{`sum by (run, tuning) (stampede_viewers_request_duration_seconds_bucket{kind="segment",le="+Inf",run="k6-e2e"})`, eq(segs), fmt.Sprint(segs)},
		{`sum by (run, tuning) (stampede_viewers_request_duration_seconds_count{kind="segment",run="k6-e2e"})`, eq(segs), fmt.Sprint(segs)},
		{`histogram_quantile(0.99, sum by (run, tuning, le) (stampede_viewers_request_duration_seconds_bucket{kind="segment",run="k6-e2e"}))`,
			func(v float64) bool { return v > 0 && v <= 0.5 }, "under the 500 ms threshold k6 passed"},
		{`histogram_quantile(0.9, sum by (run, tuning, le) (stampede_viewers_live_latency_seconds_bucket` + sel + `))`,
			func(v float64) bool { return v > 4 && v < 12 }, "6-8 s"},
		{`sum by (run, tuning) (stampede_viewers_startup_seconds_bucket{le="+Inf",run="k6-e2e"})`, eq(viewers), fmt.Sprint(viewers)},
	} {
		got, err := pollQuery(prom, c.query, c.ok, 45*time.Second)
		if err != nil {
			t.Errorf("%s: %v, want %s", c.query, err, c.want)
			continue
		}
		t.Logf("%s = %v", c.query, got)
	}
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// startPrometheus runs Debian's Prometheus with the remote-write receiver, native
// histograms and the k6 recording rules, evaluating every second; it returns its URL.
func startPrometheus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed (Debian package: prometheus; `make deps` installs it)")
	}
	dir := t.TempDir()
	// The shipped rules, with the evaluation interval shortened for a 10 s run.
	rules, err := os.ReadFile(filepath.Join(repoRoot(), "loadgen", "k6", "prometheus", "k6-stampede.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rules), "interval: 5s") {
		t.Fatal("the rules file no longer says `interval: 5s`; update this test")
	}
	rules = []byte(strings.Replace(string(rules), "interval: 5s", "interval: 1s", 1))
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n"
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := deadAddr(t) // a free port
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.enable-remote-write-receiver",
		"--enable-feature=native-histograms",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Fatalf("prometheus not ready after 30 s\n%s", log)
		}
		time.Sleep(100 * time.Millisecond) // polling an external process; no event to wait on
	}
}

// pollQuery evaluates an instant query until its single result satisfies ok or the
// deadline passes (k6 pushes every second and the rules run every second).
func pollQuery(base, query string, ok func(float64) bool, within time.Duration) (float64, error) {
	deadline := time.Now().Add(within)
	var last error
	for {
		v, err := instantQuery(base, query)
		if err == nil && ok(v) {
			return v, nil
		}
		if err == nil {
			err = fmt.Errorf("got %v", v)
		}
		last = err
		if time.Now().After(deadline) {
			return 0, last
		}
		time.Sleep(250 * time.Millisecond) // polling Prometheus's rule evaluation
	}
}

// instantQuery returns the value of a query whose result is one float sample.
func instantQuery(base, query string) (float64, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	switch {
	case out.Status != "success":
		return 0, fmt.Errorf("query failed: %s", out.Error)
	case len(out.Data.Result) != 1 || len(out.Data.Result[0].Value) != 2:
		return 0, fmt.Errorf("%d series (a native histogram where a float was expected is none)", len(out.Data.Result))
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}
