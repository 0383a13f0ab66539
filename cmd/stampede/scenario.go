package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/stampede-live/stampede/scenarios"
)

func init() {
	register(command{name: "scenario", summary: "check, list and show scenario files (check validates without running)", run: runScenario})
}

const scenarioUsage = `<check|list|show|metrics|schema> [flags] [FILE|NAME ...]

  check [-v] [FILE|NAME ...]  validate scenario files without running them (all shipped
                              scenarios when none is given); exit 0 valid, 2 invalid.
                              -v prints each resolved scenario (defaults and tunings applied)
  list                        the shipped scenarios and their lessons
  show NAME                   print a shipped scenario's file, to copy and edit
  metrics                     the metrics thresholds can use (segment_p99 < 800ms, …)
  schema                      the JSON Schema of the format (for editors)`

func runScenario(ctx context.Context, args []string) error {
	return scenarioMain(args, os.Stdout, os.Stderr)
}

func scenarioMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: stampede scenario %s\n", scenarioUsage)
		return usageError("scenario: missing subcommand")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprintf(stdout, "usage: stampede scenario %s\n", scenarioUsage)
		return nil
	case "check":
		return scenarioCheck(args[1:], stdout, stderr)
	case "list":
		return scenarioList(args[1:], stdout)
	case "show":
		return scenarioShow(args[1:], stdout)
	case "metrics":
		return scenarioMetrics(args[1:], stdout)
	case "schema":
		if len(args) > 1 {
			return usageError("scenario schema: unexpected argument %q", args[1])
		}
		b, err := scenarios.JSONSchema()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return usageError("scenario: unknown subcommand %q (want check, list, show, metrics or schema)", args[0])
}

func scenarioCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("scenario check", "[-v] [FILE|NAME ...]", stderr)
	verbose := fs.Bool("v", false, "print each resolved scenario as YAML")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	names := fs.Args()
	if len(names) == 0 {
		names = scenarios.Names()
	}
	bad := 0
	for _, n := range names {
		s, err := scenarios.Load(n)
		if err != nil {
			bad++
			fmt.Fprintln(stderr, err)
			continue
		}
		plural := "s"
		if len(s.Tunings) == 1 {
			plural = ""
		}
		fmt.Fprintf(stdout, "ok  %s (%s: %d tuning%s: %s)\n", s.File, s.Name, len(s.Tunings), plural, strings.Join(s.TuningNames(), ", "))
		if *verbose {
			b, err := s.Marshal()
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "---\n# resolved %s\n%s", s.File, b)
		}
	}
	if bad > 0 {
		return exitError{code: 2, err: fmt.Errorf("%d of %d scenario files invalid", bad, len(names))}
	}
	return nil
}

func scenarioList(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError("scenario list: unexpected argument %q", args[0])
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tTUNINGS\tLESSON")
	for _, n := range scenarios.Names() {
		s, err := scenarios.Load(n)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n, strings.Join(s.TuningNames(), ", "), s.Description)
	}
	return tw.Flush()
}

func scenarioShow(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError("scenario show: want one scenario name (have %s)", strings.Join(scenarios.Names(), ", "))
	}
	b, err := scenarios.Source(args[0])
	if err != nil {
		return usageError("%v", err)
	}
	_, err = stdout.Write(b)
	return err
}

func scenarioMetrics(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError("scenario metrics: unexpected argument %q", args[0])
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tUNIT\tWHAT")
	for _, m := range scenarios.Metrics() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, m.Unit, m.Doc)
	}
	return tw.Flush()
}
