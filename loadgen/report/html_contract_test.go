package report_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/scenarios"
)

// TestReadsTheRunnersServersFile: servers.json is written by the bench runner
// (package scenarios, through WriteServers) and drawn by the page (LoadRun,
// BuildPage), with the one ServerSeries type. A file written the runner's way, where
// the runner puts it, must come out on the page value for value, so a change to the
// file's name, place or encoding on either side fails here rather than leaving a chart
// empty.
func TestReadsTheRunnersServersFile(t *testing.T) {
	if report.ServersFile != scenarios.ServersFile {
		t.Fatalf("file names differ: report %q, scenarios %q", report.ServersFile, scenarios.ServersFile)
	}
	hit := 0.75
	viewers := int64(42)
	ss := report.ServerSeries{Tuning: "t", StepS: 1,
		Processes: []report.ProcessTotals{
			{Name: "origin", Role: "origin"}, {Name: "mirror-1", Role: "mirror", Kind: "stampede"}, {Name: "counter", Role: "counter"},
		},
		Points: []report.ServerPoint{{T: 2, Procs: map[string]report.ProcessPoint{
			"origin":   {Up: true, OpenFDs: 11, Requests: 8},
			"mirror-1": {Up: true, OpenFDs: 33, Conns: 21, Requests: 100, HitRatio: &hit},
			"counter":  {Up: false, OpenFDs: 5, Viewers: &viewers},
		}}},
	}
	dir := t.TempDir()
	if err := report.Write(dir, &report.Summary{Run: "r", Tunings: []report.Tuning{{Name: "t"}}}); err != nil {
		t.Fatal(err)
	}
	// The runner writes each tuning's files into DIR/<tuning>/, which it creates.
	tuningDir := filepath.Join(dir, "t")
	if err := os.MkdirAll(tuningDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := report.WriteServers(tuningDir, &ss); err != nil {
		t.Fatal(err)
	}
	rf, err := report.LoadRun(dir)
	if err != nil || len(rf.Problems) > 0 {
		t.Fatal(err, rf.Problems)
	}
	p := report.BuildPage(rf)
	value := func(row, line string) report.Num {
		for _, r := range p.Rows {
			if r.ID != row || r.Charts[0] == nil {
				continue
			}
			for _, l := range r.Charts[0].Lines {
				if l.Name == line {
					return l.V[0]
				}
			}
		}
		t.Fatalf("no line %s in row %s", line, row)
		return 0
	}
	for _, tc := range []struct {
		row, line string
		want      float64
	}{
		{"fds", "origin", 11},           // open_fds
		{"fds", "mirror-1", 33},         // open_fds
		{"conns", "mirror-1", 21},       // conns
		{"hit_ratio", "mirror-1", 0.75}, // hit_ratio
		{"origin", "origin", 4},         // requests over the 2 s since the start
	} {
		if got := float64(value(tc.row, tc.line)); got != tc.want {
			t.Errorf("%s/%s = %v, want %v", tc.row, tc.line, got, tc.want)
		}
	}
	// up=false reaches the page as a gap.
	if got, _ := json.Marshal(value("fds", "counter")); string(got) != "null" {
		t.Errorf("a server down drew FDs %s, want a gap", got)
	}
}
