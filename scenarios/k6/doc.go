// Package k6 holds stampede's example k6 scripts — baseline.js (viewers arriving over a
// ramp), flash-crowd.js (ramping-arrival-rate: a herd within one second) and their
// shared lib.js — for the custom k6 that `make k6` builds with the k6/x/stampede
// extension (loadgen/k6), and the test that runs them against a real relay. The package
// has no Go API; it links nothing of k6 (the test runs the k6 binary).
package k6
