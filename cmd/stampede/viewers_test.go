package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/servers/origin"
)

func TestViewersFlagErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"viewers"},                            // no --url
		{"viewers", "--url", "ftp://x/a.m3u8"}, // not http
		{"viewers", "--url", "http://x/a.m3u8", "--duration", "0s"},
		{"viewers", "--url", "http://x/a.m3u8", "--arrival", "trickle"},
		{"viewers", "--url", "http://x/a.m3u8", "--arrival", "poisson"}, // no --rate
		{"viewers", "--url", "http://x/a.m3u8", "--results-sample", "0"},
		{"viewers", "--url", "http://x/a.m3u8", "--client", "curl"},
		{"viewers", "--url", "http://x/a.m3u8", "stray"},
	} {
		if code := run(ctx, args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

func TestViewersWritesSummary(t *testing.T) {
	o, err := origin.New(origin.Config{Epoch: time.Now().Add(-30 * time.Second), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	srv := httptest.NewServer(o.Handler())
	defer srv.Close()
	dir := t.TempDir()
	results := filepath.Join(dir, "results.bin")
	code := run(context.Background(), []string{"viewers", "--url", srv.URL + "/live/master.m3u8",
		"--viewers", "5", "--ramp", "0s", "--duration", "3s", "--out", dir, "--run", "r1",
		"--results", results, "--lag-limit", "5s"})
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	s, err := report.Read(filepath.Join(dir, report.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	tn := s.Tunings[0]
	if s.Run != "r1" || tn.Name != "default" || tn.Viewers.Peak != 5 || tn.Requests.Segment < 15 || !tn.Pass || s.Incomplete {
		t.Fatalf("summary %+v", s)
	}
	series, err := report.ReadSeries(filepath.Join(dir, report.SeriesFile))
	if err != nil || len(series.Points) < 3 {
		t.Fatalf("series %+v, %v", series, err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil || !strings.Contains(string(page), "r1") {
		t.Fatalf("report.html not written beside the summary: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, report.SummaryFile)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("summary.json mode %v (%v), want 0644", fi.Mode(), err)
	}
}
