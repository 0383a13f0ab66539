package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stampede-live/stampede/scenarios"
)

func TestScenarioCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("name: good\nviewers: {count: 10}\n"), 0o644)
	os.WriteFile(bad, []byte("name: bad\nviewers:\n  arrivals: {kind: rmap}\n"), 0o644)

	for _, tc := range []struct {
		name    string
		args    []string
		want    int
		out     string // in stdout
		errText string // in stderr
	}{
		{"every shipped scenario", []string{"check"}, 0, "ok  scenarios/baseline.yaml", ""},
		{"by name", []string{"check", "map-race"}, 0, "unsafe, mutex, sharded", ""},
		{"by path", []string{"check", good}, 0, "ok  " + good, ""},
		{"verbose prints the resolved file", []string{"check", "-v", good}, 0, "mirror_choice: lowest-rtt", ""},
		{"bad file", []string{"check", good, bad}, 2, "ok  " + good, bad + `:3: viewers.arrivals.kind: unknown value "rmap" (want ramp, flash, poisson)`},
		{"unknown name", []string{"check", "nope"}, 2, "", "no shipped scenario"},
		{"list", []string{"list"}, 0, "fd-limit", ""},
		{"show", []string{"show", "geo"}, 0, "# geo —", ""},
		{"metrics", []string{"metrics"}, 0, "segment_p99", ""},
		{"schema", []string{"schema"}, 0, `"additionalProperties": false`, ""},
		{"no subcommand", nil, 2, "", ""},
		{"unknown subcommand", []string{"run"}, 2, "", ""},
	} {
		var out, errOut bytes.Buffer
		err := scenarioMain(tc.args, &out, &errOut)
		if got := exitCode(err); got != tc.want {
			t.Errorf("%s: exit %d, want %d (err %v)\n%s", tc.name, got, tc.want, err, errOut.String())
		}
		if !strings.Contains(out.String(), tc.out) {
			t.Errorf("%s: stdout lacks %q:\n%s", tc.name, tc.out, out.String())
		}
		if !strings.Contains(errOut.String(), tc.errText) {
			t.Errorf("%s: stderr lacks %q:\n%s", tc.name, tc.errText, errOut.String())
		}
	}
	if n := len(scenarios.Names()); n != 9 {
		t.Errorf("%d shipped scenarios, want 9", n)
	}
}
