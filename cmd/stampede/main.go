// Command stampede load-tests a self-hosted live HLS stream: it runs the reference
// servers (origin, mirror, counter), drives simulated viewers through them and gates
// the result. Each subcommand lives in its own file and registers itself in init.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and turns its error into an exit code:
// 0 success, 2 bad usage or input, otherwise what the command asked for (exitError) or 1.
func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		printHelp(os.Stderr)
		return 2
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(os.Stderr, "stampede: unknown command %q\n\n", args[0])
		printHelp(os.Stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:])
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(os.Stderr, "stampede %s: %v\n", cmd.name, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "stampede %s: %v\n", cmd.name, err)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}
