package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
)

// writeSummary writes a one-tuning summary to a temp dir and returns its path.
func writeSummary(t *testing.T, change func(*report.Tuning)) string {
	t.Helper()
	tun := report.Tuning{
		Name: "default", Pass: true, DurationS: 60,
		Viewers:   report.Viewers{Target: 100, Peak: 100, Sessions: 100},
		LatencyMs: report.Latencies{Segment: report.Quantiles{P50: 20, P90: 80, P99: 300, Max: 600}},
		Errors:    report.Errors{ByClass: map[string]int64{}},
		Gates:     []report.GateResult{{Name: "segment_p99", Threshold: "segment_p99 < 500ms", Value: 300, Pass: true}},
	}
	if change != nil {
		change(&tun)
	}
	dir := t.TempDir()
	if err := report.Write(dir, &report.Summary{Run: "r", Scenario: "baseline", Started: time.Now(), Pass: true, Tunings: []report.Tuning{tun}}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, report.SummaryFile)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

func TestGateExitCodes(t *testing.T) {
	good := writeSummary(t, nil)
	stalled := writeSummary(t, func(tun *report.Tuning) { tun.Stalls.Count = 1 })
	slower := writeSummary(t, func(tun *report.Tuning) { tun.LatencyMs.Segment.P99 = 400 })
	bound := writeSummary(t, func(tun *report.Tuning) { tun.Generator.Bound = true })
	garbage := filepath.Join(t.TempDir(), "summary.json")
	os.WriteFile(garbage, []byte("{not json"), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"pass", []string{"--summary", good}, 0},                                                             // recorded gates hold
		{"threshold fails", []string{"--summary", stalled, "--threshold", "stall_count == 0"}, 1},            // a given threshold fails
		{"threshold passes", []string{"--summary", good, "--threshold", "error_rate < 0.1%"}, 0},             // a given threshold holds
		{"regression", []string{"--summary", slower, "--baseline", good}, 1},                                 // p99 300 → 400 ms is over 10 % + 5 ms
		{"wider tolerance", []string{"--summary", slower, "--baseline", good, "--max-regression", "50%"}, 0}, // within 50 %
		{"exact stalls", []string{"--summary", stalled, "--baseline", good, "--max-regression", "1000"}, 1},  // any new stall fails
		{"generator bound", []string{"--summary", bound}, 1},                                                 // never a pass
		{"missing summary flag", nil, 2},                                                                     // usage
		{"missing file", []string{"--summary", filepath.Join(t.TempDir(), "nope.json")}, 2},                  // bad input
		{"bad json", []string{"--summary", garbage}, 2},                                                      // bad input
		{"bad baseline", []string{"--summary", good, "--baseline", garbage}, 2},                              // bad input
		{"bad expression", []string{"--summary", good, "--threshold", "segmnt_p99 < 1s"}, 2},                 // bad input
		{"bad percentage", []string{"--summary", good, "--max-regression", "ten"}, 2},                        // bad flag
		{"unknown tuning", []string{"--summary", good, "--tuning", "nope"}, 2},                               // bad input
	} {
		var out, errOut bytes.Buffer
		err := gateMain(tc.args, &out, &errOut)
		if got := exitCode(err); got != tc.want {
			t.Errorf("%s: exit %d, want %d (err %v)\n%s%s", tc.name, got, tc.want, err, out.String(), errOut.String())
		}
	}
	// Through run(), as the binary maps it.
	if got := run(context.Background(), []string{"gate", "--summary", stalled, "--threshold", "stall_count == 0"}); got != 1 {
		t.Errorf("run(gate failing) = %d, want 1", got)
	}
}

func TestGateWritesTableAndJUnit(t *testing.T) {
	stalled := writeSummary(t, func(tun *report.Tuning) { tun.Stalls.Count = 2 })
	junit := filepath.Join(t.TempDir(), "gate.xml")
	var out bytes.Buffer
	err := gateMain([]string{"--summary", stalled, "--threshold", "stall_count == 0", "--junit", junit}, &out, &out)
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1", exitCode(err))
	}
	if !strings.Contains(out.String(), "stall_count == 0") || !strings.Contains(out.String(), "FAIL") {
		t.Errorf("table:\n%s", out.String())
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("junit not XML: %v\n%s", err, b)
	}
	if doc.Failures != 1 || doc.Tests != 3 {
		t.Errorf("junit tests=%d failures=%d, want 3 and 1:\n%s", doc.Tests, doc.Failures, b)
	}
}
