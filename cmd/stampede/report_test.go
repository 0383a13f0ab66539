package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stampede-live/stampede/loadgen/report"
)

func TestReportCommand(t *testing.T) {
	good := filepath.Dir(writeSummary(t, nil))
	damaged := filepath.Dir(writeSummary(t, nil))
	if err := os.WriteFile(filepath.Join(damaged, report.SeriesFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		stderr  string // a part of what stderr must say
		written string // the directory whose report.html must exist
	}{
		// A run directory: report.html beside summary.json.
		{"ok", []string{good}, 0, "", good},
		// A damaged series is named, and the report is written without it.
		{"damaged series", []string{damaged}, 0, "series.json", damaged},
		// No directory given.
		{"no dir", nil, 2, "want one run directory", ""},
		// Two directories.
		{"two dirs", []string{good, good}, 2, "want one run directory", ""},
		// A directory without summary.json.
		{"no summary", []string{t.TempDir()}, 2, "summary.json", ""},
		// An unknown flag.
		{"bad flag", []string{"--nope", good}, 2, "nope", ""},
	} {
		var stdout, stderr bytes.Buffer
		err := reportMain(tc.args, &stdout, &stderr)
		if got := exitCode(err); got != tc.code {
			t.Errorf("%s: exit %d (%v), want %d", tc.name, got, err, tc.code)
		}
		msg := stderr.String()
		if err != nil {
			msg += err.Error()
		}
		if !strings.Contains(msg, tc.stderr) {
			t.Errorf("%s: output %q does not mention %q", tc.name, msg, tc.stderr)
		}
		if tc.written != "" {
			if _, err := os.Stat(filepath.Join(tc.written, report.HTMLFile)); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			if !strings.Contains(stdout.String(), report.HTMLFile) {
				t.Errorf("%s: stdout %q does not name the report", tc.name, stdout.String())
			}
		}
	}
}

// TestBenchWritesTheReport: bench's reporters include report.html's.
func TestBenchWritesTheReport(t *testing.T) {
	dir := filepath.Dir(writeSummary(t, nil))
	found := false
	for _, r := range reporters {
		if _, ok := r.(htmlReporter); ok {
			found = true
			var out bytes.Buffer
			if err := (htmlReporter{out: &out}).Report(dir, nil); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), filepath.Join(dir, report.HTMLFile)) {
				t.Errorf("reporter said %q", out.String())
			}
		}
	}
	if !found {
		t.Fatal("bench has no report.html reporter")
	}
	if _, err := os.Stat(filepath.Join(dir, report.HTMLFile)); err != nil {
		t.Fatal(err)
	}
}
