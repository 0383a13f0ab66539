// Command k6 is k6 with stampede's extension (k6/x/stampede) built in: exactly the main
// that `xk6 build --with github.com/stampede-live/stampede/loadgen/k6` generates, written
// by hand so that `make k6` needs nothing but the Go toolchain.
package main

import (
	k6cmd "go.k6.io/k6/cmd"

	_ "github.com/stampede-live/stampede/loadgen/k6"
)

func main() {
	k6cmd.Execute()
}
