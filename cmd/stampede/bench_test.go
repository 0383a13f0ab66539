package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/scenarios"
)

func TestBenchAndCapacityBadInput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nviewers: {count: -3}\n"), 0o644)
	fault := filepath.Join(t.TempDir(), "fault.yaml")
	os.WriteFile(fault, []byte("name: x\nfaults: [{at: 30s, action: kill, target: origin}]\n"), 0o644)
	// Each row: arguments that must be refused before anything starts (exit 2), and a
	// word the message must contain.
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"bench", []string{"--scenario", "no-such-scenario"}, "no shipped scenario"},                  // unknown name
		{"bench", []string{"--scenario", filepath.Join(t.TempDir(), "missing.yaml")}, "no such file"}, // missing file
		{"bench", []string{"--scenario", bad}, "viewers.count"},                                       // invalid file: names the field
		{"bench", []string{"--tuning", "nope"}, `no tuning "nope"`},                                   // unknown tuning
		{"bench", []string{"--env", "kubernetes"}, "--env"},                                           // unknown environment
		{"bench", []string{"--viewers", "-1"}, "--viewers"},                                           // negative count
		{"bench", []string{"--keep"}, "--keep"},                                                       // keep without prometheus
		{"bench", []string{"--results-sample", "2"}, "--results-sample"},                              // not a share
		{"bench", []string{"--scenario", fault, "--duration", "10s"}, "faults[0].at"},                 // a shorter run leaves a fault behind
		{"bench", []string{"extra"}, "unexpected argument"},
		{"bench", []string{"--subnet", "127.1.0"}, "--subnet"},                                               // viewers' addresses                                                  // stray argument
		{"capacity", nil, "--scenario is required"},                                                          // nothing to search
		{"capacity", []string{"--scenario", "baseline", "--slo", "segment_p99 < x"}, "segment_p99"},          // bad SLO
		{"capacity", []string{"--scenario", "geo", "--slo", "stall_count < random.stall_count"}, "capacity"}, // a reference needs two tunings
		{"capacity", []string{"--scenario", "geo", "--tuning", "nope"}, "--tuning"},                          // unknown tuning
		{"capacity", []string{"--scenario", "baseline", "--max", "-5"}, "--max"},                             // negative bound
	} {
		var stdout, stderr bytes.Buffer
		var err error
		if tc.cmd == "bench" {
			err = benchMain(context.Background(), tc.args, &stdout, &stderr)
		} else {
			err = capacityMain(context.Background(), tc.args, &stdout, &stderr)
		}
		if got := exitCode(err); got != 2 {
			t.Errorf("%s %q: exit %d (%v), want 2", tc.cmd, tc.args, got, err)
			continue
		}
		if msg := err.Error() + stderr.String(); !strings.Contains(msg, tc.want) {
			t.Errorf("%s %q: message %q lacks %q", tc.cmd, tc.args, msg, tc.want)
		}
	}
}

func TestBenchTable(t *testing.T) {
	res := &scenarios.RunResult{Summary: &report.Summary{Incomplete: true, Tunings: []report.Tuning{
		{Name: "unsafe", Viewers: report.Viewers{Target: 300, Peak: 300}, Counter: report.CounterFigures{Crashes: 7},
			Errors:  report.Errors{Total: 12, ByClass: map[string]int64{"refused": 10, "reset": 2}},
			Mirrors: []report.MirrorFigure{{HitRatio: 0.98}, {HitRatio: 0.9}},
			Gates:   []report.GateResult{{Name: "counter_crashes", Threshold: "counter_crashes == 0", Value: 7}}},
		{Name: "sharded", Pass: true, Viewers: report.Viewers{Target: 300, Peak: 300}, Generator: report.Generator{Bound: true}},
	}}}
	var b bytes.Buffer
	printBenchTable(&b, res)
	out := b.String()
	for _, want := range []string{
		"unsafe", "sharded", // a column per tuning
		"12 (refused 10, reset 2)",          // errors with their classes
		"90.0%",                             // the worst mirror's hit ratio
		"INVALID",                           // a bound generator is never a pass
		"FAIL unsafe: counter_crashes == 0", // the failed gate
		"INCOMPLETE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
