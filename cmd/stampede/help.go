package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

func init() {
	register(command{name: "help", summary: "list the commands, or show one command's flags", run: runHelp})
}

func runHelp(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printHelp(os.Stdout)
		return nil
	}
	c, ok := lookup(args[0])
	if !ok || c.name == "help" {
		return usageError("unknown command %q", args[0])
	}
	return c.run(ctx, []string{"-h"})
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "stampede — load-test a self-hosted live HLS stream before the event")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: stampede <command> [flags]")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range sortedCommands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'stampede help <command>' for a command's flags.")
}
