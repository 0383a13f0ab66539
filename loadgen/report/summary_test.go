package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := &Summary{Run: "r1", Scenario: "baseline", Started: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC), Pass: true,
		Tunings: []Tuning{{Name: "default", Pass: true, Viewers: Viewers{Target: 10, Peak: 10, Sessions: 10},
			Errors: Errors{ByClass: map[string]int64{ClassTimeout: 1}}}}}
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := Read(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if out.Schema != SchemaVersion || out.Run != "r1" || out.Tunings[0].Errors.ByClass[ClassTimeout] != 1 {
		t.Fatalf("round trip lost data: %+v", out)
	}
	b, _ := os.ReadFile(filepath.Join(dir, SummaryFile))
	for _, key := range []string{`"latency_ms"`, `"segment_ttfb"`, `"per_viewer_minute"`, `"max_abs_error"`, `"lag_p99_ms"`, `"live_latency_s"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("summary.json lacks contract key %s", key)
		}
	}
}

func TestReadRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o644)
	if _, err := Read(bad); err == nil {
		t.Error("garbage accepted")
	}
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"schema": 7}`), 0o644)
	if _, err := Read(other); err == nil || !strings.Contains(err.Error(), "schema 7") {
		t.Errorf("wrong schema: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}
