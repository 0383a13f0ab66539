// Package loadgen simulates the viewers of a live HLS stream: thousands of faithful
// players in one process, each experiencing what a real viewer would (start-up delay,
// stalls, latency behind live), and records it in bounded memory.
//
// A Viewer plays like hls.js with its default configuration and RFC 8216: it measures
// each mirror's round trip at join and plays from the nearest, loads the multivariant
// playlist, picks a rendition from its bandwidth estimate, starts three target durations
// behind the live edge, reloads the media playlist on the RFC's schedule, fetches one
// segment at a time while its buffer is under 30 s, plays in real time (a stall begins
// when the buffer runs dry and ends when the next segment lands), retries and times out
// like hls.js's load policies, switches renditions on a two-EWMA estimate, fails over to
// the next mirror after repeated errors, and calls the viewer counter every 5 s. Every
// default is a Default* constant naming its source.
//
// A Viewer has no goroutine of its own: its activities are callbacks on timers, and it
// speaks HTTP/1.1 through a small client of its own that dials from the viewer's own
// loopback address, keeps its connections alive like a browser tab, and borrows read
// buffers from a shared pool only while an answer is arriving. A waiting viewer costs a
// few kilobytes; 5,000 of them fit in well under 100 MB and a third of a core.
//
// A Swarm starts viewers on an open-model schedule (ramp, flash crowd, Poisson; session
// lengths for churn), checks its own timer lag (a generator that falls behind marks its
// run invalid), serves /metrics (stampede_viewers_*), optionally writes every request in
// vegeta's encoding, and returns a Result: one summary.json tuning entry (loadgen/report)
// and a per-second series.
//
// Tests drive viewers on a virtual clock against controllable servers, so reload
// intervals, stall lengths and start-up times are checked exactly.
package loadgen
