package prometheus

import (
	"context"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-live/stampede/internal/serverkit"
)

// startTarget serves one counter on a real loopback listener and returns its address.
func startTarget(t *testing.T, labels serverkit.Labels) (string, prometheus.Counter) {
	t.Helper()
	reg, r := serverkit.NewRegistry(labels)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_test_requests_total", Help: "test"})
	r.MustRegister(c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: serverkit.MetricsHandler(reg)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), c
}

func TestRealPrometheusScrapesAndAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx, Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })

	addrA, ca := startTarget(t, nil)
	addrB, cb := startTarget(t, nil)
	ca.Add(5)
	cb.Add(7)
	if err := p.AddTargets(
		Target{Job: "origin", Addr: addrA, Labels: map[string]string{"run": "r1", "tuning": "a"}},
		Target{Job: "origin", Addr: addrB, Labels: map[string]string{"run": "r2", "tuning": "b"}},
	); err != nil {
		t.Fatal(err)
	}

	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	if err := p.WaitScraped(wctx, []string{addrA, addrB}); err != nil {
		t.Fatalf("WaitScraped: %v", err)
	}
	wcancel()
	// Once scraped, the values are there to query (within an evaluation, so still poll).
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if err := p.WaitScraped(sctx, []string{addrA, "127.0.0.1:1"}); err == nil {
		t.Fatal("WaitScraped returned for an address that is no target")
	}
	scancel()
	// Poll with a deadline until both targets' values are queryable.
	var samples []Sample
	deadline := time.Now().Add(60 * time.Second)
	for {
		samples, err = p.Query(ctx, `sum by (run, tuning) (stampede_test_requests_total{job="origin"})`, time.Time{})
		if err == nil && len(samples) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not scraped in time: %v %v", samples, err)
		}
		time.Sleep(200 * time.Millisecond) // polling an external process; no event to wait on
	}
	got := map[string]float64{}
	for _, s := range samples {
		got[s.Metric["run"]+"/"+s.Metric["tuning"]] = s.Value
	}
	if got["r1/a"] != 5 || got["r2/b"] != 7 {
		t.Fatalf("per-run values = %v, want r1/a=5 r2/b=7", got)
	}
	up, total, err := p.TargetsUp(ctx)
	if err != nil || up != 2 || total != 2 {
		t.Fatalf("targets up %d/%d (%v)", up, total, err)
	}

	f, err := p.FormatQuery(ctx, `sum by(run)(rate(stampede_test_requests_total[1m]))`)
	if err != nil || !strings.Contains(f, "sum by (run)") {
		t.Fatalf("format_query = %q, %v", f, err)
	}
	if _, err := p.FormatQuery(ctx, `sum by (run (`); err == nil {
		t.Fatal("format_query accepted a broken expression")
	}
	series, err := p.QueryRange(ctx, `stampede_test_requests_total`, time.Now().Add(-time.Minute), time.Now(), time.Second)
	if err != nil || len(series) != 2 || len(series[0].Points) == 0 {
		t.Fatalf("query_range = %v, %v", series, err)
	}

	pid := p.cmd.Process.Pid
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("prometheus pid %d still alive after Stop", pid)
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Start(ctx, Config{}); err == nil || !strings.Contains(err.Error(), "dir") {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := Start(ctx, Config{Dir: t.TempDir(), Binary: "no-such-prometheus"}); err != ErrNotInstalled {
		t.Errorf("missing binary: %v", err)
	}
}
