package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/scenarios"
)

func init() {
	register(command{name: "report", summary: "write DIR/report.html (charts comparing the tunings) from a run's files", run: runReport})
	// Every bench writes report.html beside its summary.
	reporters = append(reporters, htmlReporter{out: os.Stderr})
}

const reportUsage = `DIR

Renders DIR/summary.json and the series beside it (DIR/<tuning>/series.json and
servers.json from stampede bench, DIR/series.json from stampede viewers) into
DIR/report.html: one self-contained page that opens offline. stampede bench writes
it after every run; use this to regenerate it.`

func runReport(ctx context.Context, args []string) error {
	return reportMain(args, os.Stdout, os.Stderr)
}

func reportMain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", reportUsage, stderr)
	// DIR is positional, which parseFlags refuses; the flag errors map the same way.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError{code: 0}
		}
		return usageError("%v", err)
	}
	if fs.NArg() != 1 {
		return usageError("want one run directory (holding summary.json), got %d arguments", fs.NArg())
	}
	dir := fs.Arg(0)
	if _, err := os.Stat(filepath.Join(dir, report.SummaryFile)); err != nil {
		return usageError("%s: %v", dir, err)
	}
	problems, err := report.WriteHTML(dir)
	for _, p := range problems {
		fmt.Fprintf(stderr, "warning: %s (left out of the report)\n", p)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, report.HTMLFile), err)
	}
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(dir, report.HTMLFile))
	return nil
}

var _ scenarios.Reporter = htmlReporter{}

// htmlReporter writes report.html when a bench run ends (also an interrupted one).
type htmlReporter struct{ out io.Writer }

func (h htmlReporter) Report(dir string, _ *scenarios.RunResult) error {
	problems, err := report.WriteHTML(dir)
	for _, p := range problems {
		fmt.Fprintf(h.out, "report: warning: %s (left out of the report)\n", p)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(h.out, "report: %s\n", filepath.Join(dir, report.HTMLFile))
	return nil
}
