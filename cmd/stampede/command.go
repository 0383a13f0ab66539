package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. Each lives in its own file and registers itself from init,
// so adding a subcommand never touches main.go.
type command struct {
	name    string
	summary string // one line for `stampede help`
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("stampede: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func lookup(name string) (command, bool) {
	c, ok := commands[name]
	return c, ok
}

func sortedCommands() []command {
	out := make([]command, 0, len(commands))
	for _, c := range commands {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// errUsage marks bad flags or arguments; run maps it to exit code 2.
var errUsage = errors.New("bad usage")

// usageError wraps a message so that it both prints and exits 2.
func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// exitError lets a command choose its exit code (the gate's 0/1/2 contract).
type exitError struct {
	code int
	err  error // printed when non-nil
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// newFlagSet returns a flag set that reports errors instead of exiting, so every
// subcommand shares one exit-code policy.
func newFlagSet(name, usage string, out io.Writer) *flag.FlagSet {
	if out == nil {
		out = os.Stderr
	}
	fs := flag.NewFlagSet("stampede "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: stampede %s %s\n\nflags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps flag errors to errUsage (-h/--help is not an error).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError{code: 0}
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
