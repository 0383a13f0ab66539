package main

import (
	"context"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},                           // no command: usage
		{[]string{"nope"}, 2},              // unknown command
		{[]string{"version"}, 0},           // a command that works
		{[]string{"version", "-bogus"}, 2}, // bad flag
		{[]string{"version", "extra"}, 2},  // stray argument
		{[]string{"help"}, 0},
		{[]string{"help", "version"}, 0}, // -h is not an error
		{[]string{"help", "nope"}, 2},
	} {
		if got := run(ctx, tc.args); got != tc.want {
			t.Errorf("run(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}

func TestEveryCommandHasSummary(t *testing.T) {
	for _, c := range sortedCommands() {
		if c.summary == "" || c.run == nil {
			t.Errorf("command %q lacks a summary or run func", c.name)
		}
	}
}
