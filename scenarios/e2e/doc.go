// Package e2e holds the end-to-end tests of the shipped scenarios: each runs `stampede
// bench` (the real binary, with the real servers as child processes) on a scaled-down
// copy of one scenario file and asserts the scenario's lesson — its tunings' `expect`
// lists and the figures behind them. They are in `go test ./...` and take a few minutes
// together; nothing here is imported.
package e2e
