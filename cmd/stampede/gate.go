package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/scenarios"
)

func init() {
	register(command{name: "gate", summary: "pass/fail a run's summary.json on thresholds and a baseline (exit 0 pass, 1 fail, 2 bad input)", run: runGate})
}

const gateUsage = `--summary FILE [--baseline FILE --max-regression 10%] [--threshold EXPR ...] [--junit FILE]

Checks every tuning of a run: the thresholds recorded in the summary and those given
with --threshold (segment_p99 < 800ms, error_rate < 0.1%, …; see 'stampede scenario
metrics'), that the load generator kept up, and, with --baseline, regressions against
the tuning of the same name: latency quantiles may grow by --max-regression plus
--latency-floor, stalls, errors and crashes may not grow at all.
Exit 0 pass, 1 a check failed, 2 bad input.`

// percentFlag reads "10%" or "10" as 0.10.
type percentFlag float64

func (p *percentFlag) String() string {
	return strconv.FormatFloat(float64(*p)*100, 'f', -1, 64) + "%"
}

func (p *percentFlag) Set(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || v < 0 || v > 10000 {
		return fmt.Errorf("want a percentage such as 10%%, got %q", s)
	}
	*p = percentFlag(v / 100)
	return nil
}

// thresholdsFlag collects repeated --threshold expressions, parsing each as it comes.
type thresholdsFlag []scenarios.Threshold

func (t *thresholdsFlag) String() string {
	parts := make([]string, len(*t))
	for i, th := range *t {
		parts[i] = th.String()
	}
	return strings.Join(parts, "; ")
}

func (t *thresholdsFlag) Set(s string) error {
	th, err := scenarios.ParseThreshold(s)
	if err != nil {
		return err
	}
	*t = append(*t, th)
	return nil
}

// stringsFlag collects a repeated string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func runGate(ctx context.Context, args []string) error {
	return gateMain(args, os.Stdout, os.Stderr)
}

func gateMain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gate", gateUsage, stderr)
	summary := fs.String("summary", "", "the run's summary.json (required)")
	baseline := fs.String("baseline", "", "a baseline summary.json to compare with, tuning by tuning")
	maxReg := percentFlag(scenarios.DefaultMaxRegression)
	fs.Var(&maxReg, "max-regression", "how much a latency quantile may grow over the baseline")
	floor := fs.Duration("latency-floor", scenarios.DefaultLatencyFloor, "absolute allowance added to every latency comparison (noise on a busy machine)")
	var extra thresholdsFlag
	fs.Var(&extra, "threshold", "a threshold checked on every tuning, e.g. 'segment_p99 < 800ms' (repeatable)")
	var tunings stringsFlag
	fs.Var(&tunings, "tuning", "gate only this tuning (repeatable; default all)")
	junit := fs.String("junit", "", "also write the checks as JUnit XML to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *summary == "" {
		return usageError("--summary is required")
	}
	if *floor <= 0 {
		return usageError("--latency-floor must be more than 0")
	}
	if maxReg == 0 {
		// 0 would mean "the default" to the library; a strict gate is a tiny tolerance.
		maxReg = 1e-9
	}
	sum, err := report.Read(*summary)
	if err != nil {
		return exitError{code: 2, err: fmt.Errorf("summary: %w", err)}
	}
	cfg := scenarios.GateConfig{
		Thresholds:    extra,
		Tunings:       tunings,
		MaxRegression: float64(maxReg),
		LatencyFloor:  *floor,
	}
	if *baseline != "" {
		b, err := report.Read(*baseline)
		if err != nil {
			return exitError{code: 2, err: fmt.Errorf("baseline: %w", err)}
		}
		cfg.Baseline = b
	}
	v, err := scenarios.Gate(sum, cfg)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	if err := v.WriteTable(stdout); err != nil {
		return err
	}
	if *junit != "" {
		if err := writeJUnit(*junit, v); err != nil {
			return exitError{code: 2, err: err}
		}
	}
	if !v.Pass {
		return exitError{code: 1}
	}
	return nil
}

func writeJUnit(path string, v *scenarios.Verdict) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if err := v.WriteJUnit(f); err != nil {
		f.Close()
		return fmt.Errorf("junit: %w", err)
	}
	return f.Close()
}

var (
	_ flag.Value = (*percentFlag)(nil)
	_ flag.Value = (*thresholdsFlag)(nil)
	_ flag.Value = (*stringsFlag)(nil)
)
