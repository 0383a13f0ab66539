package main

import (
	"context"
	"testing"
)

func TestMirrorFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"mirror", "--listen", "127.0.0.1:0"}, 2},                                                   // --upstream is required
		{[]string{"mirror", "--listen", "127.0.0.1:0", "--upstream", "ftp://x"}, 2},                          // not http(s)
		{[]string{"mirror", "--listen", "127.0.0.1:0", "--upstream", "http://x", "--cache-size", "12XB"}, 2}, // unknown unit
		{[]string{"mirror", "--listen", "127.0.0.1:0", "--upstream", "http://x", "--overload", "drop"}, 2},   // not shed|queue
		{[]string{"mirror", "--listen", "127.0.0.1:0", "--upstream", "http://x", "--segment-ttl", "-1s"}, 2}, // negative
		{[]string{"mirror", "--listen", "127.0.0.1:0", "--upstream", "http://x", "--max-conns", "-3"}, 2},    // negative
		{[]string{"bench-mirror", "--connections", "10,x"}, 2},                                               // not a number
		{[]string{"help", "mirror"}, 0},
		{[]string{"help", "bench-mirror"}, 0},
	} {
		if got := run(context.Background(), tc.args); got != tc.want {
			t.Errorf("run(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}
