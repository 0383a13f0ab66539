package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stampede-live/stampede/scenarios"
	"github.com/stampede-live/stampede/testenv/local"
)

func init() {
	register(command{name: "capacity", summary: "find the most viewers a scenario's relay serves within an SLO, and what runs out first", run: runCapacity})
}

const capacityUsage = `--scenario FILE|NAME [--slo EXPR ...] [--tuning NAME] [--start N --step N --max N --resolution N --step-duration D] [--out DIR]

Runs the scenario's tuning with a growing crowd: --start viewers, then --step more
each time, until the SLO breaks or --max holds; then bisects between the last pass
and the first failure down to --resolution viewers. Prints the most viewers that held,
what ran out first (CPU, file descriptors, connections, bandwidth, or the load
generator itself), and the figures a planner needs per mirror. Defaults come from the
scenario's capacity: and slo: (else its thresholds). Writes DIR/capacity.json and a
directory per step. Exit 0 when the search finished, 2 bad input, 130 interrupted.`

func runCapacity(ctx context.Context, args []string) error {
	return capacityMain(ctx, args, os.Stdout, os.Stderr)
}

func capacityMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("capacity", capacityUsage, stderr)
	scenario := fs.String("scenario", "", "scenario file, or the name of a shipped one (required)")
	var slo thresholdsFlag
	fs.Var(&slo, "slo", "a threshold every step must hold (repeatable; default the scenario's slo:)")
	tuning := fs.String("tuning", "", "the tuning to search (default the scenario's first)")
	start := fs.Int("start", 0, "viewers of the first step (default the scenario's capacity.start)")
	step := fs.Int("step", 0, "viewers added per step (default capacity.step)")
	maxViewers := fs.Int("max", 0, "stop searching up at this many viewers (default capacity.max)")
	resolution := fs.Int("resolution", 0, "bisect until the gap is at most this (default capacity.resolution)")
	stepDur := fs.Duration("step-duration", 0, "how long each step runs (default capacity.step_duration)")
	out := fs.String("out", "", "directory for capacity.json and the steps (default results/capacity-SCENARIO-TIME)")
	subnet := fs.String("subnet", local.DefaultSubnet, "first three octets of the servers' loopback addresses")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *scenario == "" {
		return usageError("--scenario is required")
	}
	for name, v := range map[string]int{"--start": *start, "--step": *step, "--max": *maxViewers, "--resolution": *resolution} {
		if v < 0 {
			return usageError("%s: must be >= 0, got %d", name, v)
		}
	}
	if !strings.HasPrefix(*subnet+".", "127.0.") || strings.Count(*subnet, ".") != 2 {
		return usageError("--subnet %q: want 127.0.N (viewers use the rest of 127.0.0.0/8)", *subnet)
	}
	if *stepDur < 0 {
		return usageError("--step-duration: must be >= 0, got %v", *stepDur)
	}
	s, err := scenarios.Load(*scenario)
	if err != nil {
		return usageError("--scenario: %v", err)
	}
	if *tuning != "" {
		if _, ok := s.Tuning(*tuning); !ok {
			return usageError("--tuning: no tuning %q in %s (have %v)", *tuning, s.Name, s.TuningNames())
		}
	}
	for _, th := range slo {
		if th.Ref != nil {
			return usageError("--slo %q: compares with another tuning; a capacity step runs one tuning", th)
		}
	}
	if *out == "" {
		*out = filepath.Join("results", "capacity-"+s.Name+"-"+time.Now().Format("20060102-150405"))
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the stampede executable to run the servers: %w", err)
	}
	cfg := scenarios.CapacityConfig{
		RunConfig: scenarios.RunConfig{Binary: bin, Dir: *out, Progress: stderr, Subnet: *subnet, ResultsSample: -1},
		Tuning:    *tuning, SLO: slo,
		Start: *start, Step: *step, Max: *maxViewers, Resolution: *resolution, StepDuration: *stepDur,
	}
	res, err := scenarios.FindCapacity(ctx, s, cfg)
	if res != nil {
		printCapacity(stdout, res, filepath.Join(*out, scenarios.CapacityFile))
	}
	switch {
	case errors.Is(err, scenarios.ErrInterrupted):
		return exitError{code: 130, err: errors.New("interrupted: capacity.json covers the steps that finished")}
	case err != nil && res == nil:
		var fe *scenarios.FieldError
		var el scenarios.ErrorList
		if errors.As(err, &fe) || errors.As(err, &el) {
			return usageError("%v", err)
		}
		return err
	}
	return err
}

func printCapacity(w io.Writer, r *scenarios.CapacityResult, path string) {
	fmt.Fprintf(w, "capacity of %s (tuning %s), SLO: %s\n\n", r.Scenario, r.Tuning, strings.Join(r.SLO, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "viewers\tSLO\tseg p99\tstalls\terrors\tcpu servers+gen/cores (machine)\tfd use\temfile\tshed\tgenerator")
	for _, st := range r.Steps {
		slo := "holds"
		if !st.Pass {
			slo = "BREAKS"
		}
		rs := st.Resources
		fmt.Fprintf(tw, "%d\t%s\t%.0fms\t%d\t%d\t%.2f+%.2f/%.0f (%.0f%%)\t%.0f%%\t%d\t%d\t%s\n",
			st.Viewers, slo, st.SegmentP99, st.Stalls, st.Errors, rs.ServersCPU, rs.GeneratorCPU, rs.Cores,
			rs.MachineBusy*100, rs.FDUse*100, rs.EMFILE, rs.Shed, map[bool]string{true: "BOUND", false: "ok"}[st.Bound])
	}
	tw.Flush()
	fmt.Fprintln(w)
	switch {
	case r.Highest == 0 && r.FirstFailure > 0:
		fmt.Fprintf(w, "highest passing: none (the first step, %d viewers, broke the SLO)\n", r.FirstFailure)
	case r.FirstFailure == 0:
		fmt.Fprintf(w, "highest passing: %d viewers (the SLO held up to the maximum searched)\n", r.Highest)
	default:
		fmt.Fprintf(w, "highest passing: %d viewers (first failure at %d)\n", r.Highest, r.FirstFailure)
	}
	fmt.Fprintf(w, "ran out first:   %s — %s\n", r.Limit.Resource, r.Limit.Detail)
	p := r.Planner
	fmt.Fprintf(w, "per mirror (at %d viewers over %d mirrors): busiest %d viewers, %.1f Mbit/s (%.1f at peak), %.0f FDs per 1,000 viewers; relay CPU %.3f cores per 1,000 viewers\n",
		p.Viewers, p.Mirrors, p.ViewersPerMirror, p.MbitPerMirror, p.PeakMbitPerMirror, p.FDsPer1000, p.CPUPer1000)
	if r.Incomplete {
		fmt.Fprintln(w, "INCOMPLETE: interrupted; figures cover the steps that finished")
	}
	fmt.Fprintf(w, "result: %s\n", path)
}
