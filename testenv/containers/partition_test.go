package containers

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/testenv/local"
)

// TestPartition cuts mirrors off from the origin (a network disconnect) while viewers
// watch: three mirrors side by side in one run, 2 s segments, ten viewers each (they
// play about three segments behind the live edge: some 5 s of buffer), playlists
// cached 500 ms so that any cut sees the mirror go upstream:
//
//   - mirror-1, stale-if-error on, partitioned 2 s: it answers from its last good
//     copies while the origin is unreachable, and the viewers' buffers carry them
//     through: no stall, no error.
//   - mirror-2, stale-if-error on, partitioned 12 s, longer than any buffer: stale
//     copies keep answering (no error), but the playlist does not move, buffers run
//     dry and every viewer stalls until the link heals.
//   - mirror-3, stale-if-error off, the same 12 s: the partition reaches the viewers
//     as errors — what stale-if-error turned into mere waiting on mirror-2.
//
// (A short cut without stale-if-error is no fair control: a fetch hung on a kept-alive
// connection often completes by TCP retransmission once the link is back.)
func TestPartition(t *testing.T) {
	needDocker(t)
	stale := []string{"--stale-if-error", "500ms", "--upstream-timeout", "1s", "--playlist-ttl", "500ms"}
	noStale := []string{"--stale-if-error", "0", "--upstream-timeout", "1s", "--playlist-ttl", "500ms"}
	topo := startTopology(t, Spec{
		Name:    "partition",
		Origin:  Role{Args: []string{"--segment-duration", "2s", "--bitrate", "200k", "--window", "6"}},
		Mirrors: []Role{{Args: stale}, {Args: stale}, {Args: noStale}},
	})
	ms := topo.Mirrors()
	const (
		at       = 10 * time.Second // all viewers joined and buffered (ramp 2 s, start ~1 s)
		short    = 2 * time.Second
		long     = 12 * time.Second
		duration = "28s"
	)
	names := []string{"short-stale", "long-stale", "long-nostale"}
	start := time.Now()
	vs := make([]*viewers, len(ms))
	for i, m := range ms {
		vs[i] = startViewers(t, names[i], "--url", m.URL()+"/live/master.m3u8", "--viewers", "10", "--ramp", "2s",
			"--duration", duration, "--heartbeat", "0")
	}
	faults := []local.Fault{
		{At: at, Until: at + short, Action: FaultPartition, Target: "mirror-1"},
		{At: at, Until: at + long, Action: FaultPartition, Target: "mirror-2"},
		{At: at, Until: at + long, Action: FaultPartition, Target: "mirror-3"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var applied []local.Applied
	if err := topo.RunFaults(ctx, nil, start, faults, func(a local.Applied) { applied = append(applied, a) }); err != nil {
		t.Fatalf("RunFaults: %v", err)
	}
	for _, a := range applied {
		t.Logf("fault at +%.2fs: %s", a.At.Sub(start).Seconds(), a)
		if a.Err != nil {
			t.Errorf("fault step failed: %s", a)
		}
	}
	res := make([]*report.Tuning, len(vs))
	for i, v := range vs {
		res[i] = v.wait(t, 2*time.Minute)
	}
	stales := make([]float64, len(ms))
	for i, m := range ms {
		mm := metrics(t, m.MetricsURL())
		stales[i] = sum(mm, "stampede_mirror_requests_total", `result="stale"`)
		t.Logf("%s: stale answers %.0f, upstream errors %.0f %s", m.Name(), stales[i],
			sum(mm, "stampede_mirror_upstream_errors_total"), upstreamErrorClasses(mm))
	}

	short1, long2, noStale3 := res[0], res[1], res[2]
	t.Logf("live latency p50 before/after (buffer ≈ latency minus the edge's age): short-stale %.1f s, long-stale %.1f s, long-nostale %.1f s",
		short1.LiveLatencyS.P50, long2.LiveLatencyS.P50, noStale3.LiveLatencyS.P50)
	if stales[0] == 0 {
		t.Errorf("mirror-1 served nothing stale during its partition: the partition did not cut it off")
	}
	if short1.Stalls.Count != 0 || short1.Errors.Total != 0 {
		t.Errorf("a %s partition with stale-if-error: %d stalls, %d errors; want the buffer to carry the viewers (none)", short, short1.Stalls.Count, short1.Errors.Total)
	}
	if long2.Stalls.Count == 0 || long2.Stalls.SessionsWithStall < 0.5 {
		t.Errorf("a %s partition (longer than the buffer): %d stalls in %.0f%% of sessions; want most viewers to stall", long, long2.Stalls.Count, 100*long2.Stalls.SessionsWithStall)
	}
	if long2.Stalls.Seconds < float64(long2.Viewers.Sessions) || long2.Errors.Total != 0 {
		t.Errorf("a %s partition with stale-if-error: %.1f s of stalls over %d viewers, %d errors; want over a second each, and no error (stale answers)",
			long, long2.Stalls.Seconds, long2.Viewers.Sessions, long2.Errors.Total)
	}
	if stales[1] == 0 {
		t.Errorf("mirror-2 served nothing stale during its partition")
	}
	if noStale3.Errors.Total == 0 {
		t.Errorf("a %s partition without stale-if-error reached no viewer as an error", long)
	}
	// After healing every mirror follows the live edge again.
	for _, m := range ms {
		if m.Partitioned() {
			t.Errorf("%s is still partitioned after the plan", m.Name())
		}
		assertLive(t, topo, m)
	}
}

// upstreamErrorClasses lists a mirror's upstream errors by class.
func upstreamErrorClasses(m map[string]float64) string {
	var b strings.Builder
	for k, v := range m {
		if strings.HasPrefix(k, "stampede_mirror_upstream_errors_total{") && v > 0 {
			b.WriteString(" " + strings.TrimPrefix(k, "stampede_mirror_upstream_errors_total") + "=" + strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	return b.String()
}

// assertLive checks that m's media playlist ends where the origin's does (within one
// segment): its upstream link works.
func assertLive(t *testing.T, topo *Topology, m *Service) {
	t.Helper()
	path := mediaPath(t, topo.OriginURL())
	want := lastSegment(t, topo.OriginURL()+path)
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		got := lastSegment(t, m.URL()+path)
		if got != "" && segNum(got) >= segNum(want)-1 {
			return
		}
		select {
		case <-deadline:
			t.Errorf("%s's playlist ends at %s, the origin's at %s: it does not follow the origin", m.Name(), got, want)
			return
		case <-tick.C:
		}
	}
}

// mediaPath is the first media playlist named in the origin's multivariant playlist.
func mediaPath(t *testing.T, base string) string {
	t.Helper()
	for _, l := range strings.Split(get(t, base+"/live/master.m3u8"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return "/live/" + l
		}
	}
	t.Fatalf("no media playlist in %s/live/master.m3u8", base)
	return ""
}

// lastSegment is the URI of the last segment of a media playlist.
func lastSegment(t *testing.T, url string) string {
	t.Helper()
	last := ""
	for _, l := range strings.Split(get(t, url), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			last = l
		}
	}
	return last
}

func segNum(uri string) int {
	n := 0
	for _, c := range strings.TrimSuffix(uri, ".ts") {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := healthClient.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}
