package mirror

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/internal/serverkit"
)

// scrape sums each metric family's samples (histograms by their _count) from /metrics.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return parseExposition(t, bufio.NewScanner(resp.Body))
}

func parseExposition(t testing.TB, sc *bufio.Scanner) map[string]float64 {
	out := map[string]float64{}
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		name = strings.TrimSuffix(name, "_count")
		out[name] += v
	}
	return out
}

func TestEveryMetricMoves(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Write(segment(5000))
	})
	fake := clock.NewFake(epoch)
	_, base := startMirror(t, Config{Upstream: up.URL, Clock: fake, CacheSize: 12_000,
		Labels: serverkit.Labels{"run": "r1"}})
	get(t, base+"/live/1.ts")             // miss
	get(t, base+"/live/1.ts")             // hit
	get(t, base+"/live/index.m3u8")       // miss
	get(t, base+"/live/2.ts")             // evicts
	get(t, base+"/favicon.ico")           // bypass
	http.Post(base+"/live/1.ts", "", nil) // rejected
	broken.Store(true)
	fake.Advance(time.Second)
	get(t, base+"/live/index.m3u8") // 500 upstream: stale

	m := scrape(t, base)
	// Checked by their own tests: emfile_total (TestFDExhaustion), shed_total
	// (TestMaxConnsShed), queued_connections (TestMaxConnsQueue).
	elsewhere := map[string]bool{metricEMFILE: true, metricShed: true, metricQueued: true}
	for _, name := range []string{metricRequests, metricRejected, metricSentBytes, metricUpstreamRequests,
		metricUpstreamDuration, metricUpstreamBytes, metricUpstreamErrors, metricCacheBytes, metricCacheObjects,
		metricCacheEvictions, metricClientConns, metricOpenFDs, metricMaxFDs, metricEMFILE, metricShed, metricQueued} {
		v, ok := m[name]
		switch {
		case !ok:
			t.Errorf("%s is not exported", name)
		case v <= 0 && !elsewhere[name]:
			t.Errorf("%s did not move (%v)", name, v)
		}
	}
	for _, series := range []string{`result="hit"`, `result="miss"`, `result="stale"`, `result="bypass"`, `run="r1"`} {
		if !strings.Contains(scrapeRaw(t, base), series) {
			t.Errorf("no series with %s", series)
		}
	}
}

func scrapeRaw(t testing.TB, url string) string {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}
