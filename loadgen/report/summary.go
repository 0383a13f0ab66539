// Package report holds the summary.json contract (DESIGN.md) that `stampede viewers`
// and `stampede bench` write and that `stampede gate`, the HTML report and users' CI
// read. Field names and units are part of the contract: add fields, never rename them.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SchemaVersion is the value of Summary.Schema this package writes and reads.
const SchemaVersion = 1

// SummaryFile is the file name written into a run's output directory.
const SummaryFile = "summary.json"

// Summary is one run: one entry per tuning.
type Summary struct {
	Schema   int       `json:"schema"`
	Run      string    `json:"run"`
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Pass     bool      `json:"pass"`
	// Incomplete is true when the run was interrupted (Ctrl-C) or failed before its
	// planned end; what was measured up to then is still here.
	Incomplete bool     `json:"incomplete,omitempty"`
	Tunings    []Tuning `json:"tunings"`
}

// Tuning is the outcome of one tuning of a scenario.
type Tuning struct {
	Name         string         `json:"name"`
	Pass         bool           `json:"pass"`
	DurationS    float64        `json:"duration_s,omitempty"`
	Viewers      Viewers        `json:"viewers"`
	Requests     Requests       `json:"requests"`
	LatencyMs    Latencies      `json:"latency_ms"`
	Stalls       Stalls         `json:"stalls"`
	LiveLatencyS Quantiles      `json:"live_latency_s"`
	Errors       Errors         `json:"errors"`
	Origin       OriginFigures  `json:"origin"`
	Mirrors      []MirrorFigure `json:"mirrors"`
	Counter      CounterFigures `json:"counter"`
	Generator    Generator      `json:"generator"`
	Gates        []GateResult   `json:"gates"`
	// Player holds the simulated players' own observations (loadgen); absent in
	// summaries written before it existed.
	Player *PlayerFigures `json:"player,omitempty"`
	// Notes are free-form observations (crashes seen, faults applied, errors logged).
	Notes []string `json:"notes,omitempty"`
}

// Viewers counts simulated viewers.
type Viewers struct {
	Target   int `json:"target"`
	Peak     int `json:"peak"`
	Sessions int `json:"sessions"`
	// Failed counts sessions that ended on a fatal player error (a load failed past
	// its retries, as hls.js would report).
	Failed int `json:"failed,omitempty"`
}

// Requests counts requests by kind.
type Requests struct {
	Playlist  int64 `json:"playlist"`
	Segment   int64 `json:"segment"`
	Heartbeat int64 `json:"heartbeat"`
	// Ping counts the round-trip probes viewers send to each mirror at join (only when
	// there is more than one mirror to choose from).
	Ping int64 `json:"ping,omitempty"`
}

// Quantiles of one measure, in the unit its key names (latency_ms → ms, live_latency_s → s).
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Latencies are request and startup latencies in milliseconds.
type Latencies struct {
	Playlist    Quantiles `json:"playlist"`
	Segment     Quantiles `json:"segment"`
	SegmentTTFB Quantiles `json:"segment_ttfb"`
	Heartbeat   Quantiles `json:"heartbeat"`
	Startup     Quantiles `json:"startup"`
}

// Stalls summarises rebuffering.
type Stalls struct {
	Count             int64   `json:"count"`
	Seconds           float64 `json:"seconds"`
	PerViewerMinute   float64 `json:"per_viewer_minute"`
	RebufferRatio     float64 `json:"rebuffer_ratio"`
	SessionsWithStall float64 `json:"sessions_with_stall"`
}

// Error classes used in Errors.ByClass (and as the `class` metric label).
const (
	ClassTimeout   = "timeout"
	ClassRefused   = "refused"
	ClassReset     = "reset"
	ClassEMFILE    = "emfile"
	ClassHTTP4xx   = "http_4xx"
	ClassHTTP5xx   = "http_5xx"
	ClassMalformed = "malformed" // a playlist that did not parse
	ClassOther     = "other"
)

// Errors counts failed requests.
type Errors struct {
	Total   int64            `json:"total"`
	Rate    float64          `json:"rate"` // failed / all requests
	ByClass map[string]int64 `json:"by_class"`
}

// OriginFigures are what the origin saw.
type OriginFigures struct {
	Requests int64 `json:"requests"`
}

// MirrorFigure is one mirror's figures.
type MirrorFigure struct {
	Name             string  `json:"name"`
	Kind             string  `json:"kind,omitempty"` // stampede or nginx
	HitRatio         float64 `json:"hit_ratio"`
	UpstreamRequests int64   `json:"upstream_requests"`
	MaxOpenFDs       int64   `json:"max_open_fds"`
	EMFILE           int64   `json:"emfile,omitempty"`
	Shed             int64   `json:"shed,omitempty"`
}

// CounterFigures compare the counter's answers with the true number of active viewers.
type CounterFigures struct {
	MaxAbsError int64 `json:"max_abs_error"`
	Crashes     int64 `json:"crashes"`
}

// Generator says whether the load generator itself kept up.
type Generator struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	MaxRSSBytes int64   `json:"max_rss_bytes"`
	LagP99Ms    float64 `json:"lag_p99_ms"`
	// Bound is true when the generator fell behind its schedule: the run is invalid and
	// must never be reported as a pass.
	Bound bool `json:"bound"`
}

// PlayerFigures are what the simulated players did besides requests and stalls.
type PlayerFigures struct {
	MirrorSwitches  int64     `json:"mirror_switches"`  // failovers after repeated errors
	RenditionUp     int64     `json:"rendition_up"`     // ABR switches up
	RenditionDown   int64     `json:"rendition_down"`   // ABR switches down
	Resyncs         int64     `json:"resyncs"`          // fell out of the live window and jumped back
	AbortedRequests int64     `json:"aborted_requests"` // in flight at the run's end, cut short
	CounterAnswers  int64     `json:"counter_answers"`  // heartbeats answered with a count
	BytesIn         int64     `json:"bytes_in"`         // response body bytes received
	StallMs         Quantiles `json:"stall_ms"`         // length of each ended stall
}

// GateResult is one threshold check.
type GateResult struct {
	Name      string  `json:"name"`
	Threshold string  `json:"threshold"`
	Value     float64 `json:"value"`
	Pass      bool    `json:"pass"`
}

// Write writes s as indented JSON to dir/summary.json, creating dir, with
// WriteFileAtomic: a reader never sees half a summary, and anyone may read it.
func Write(dir string, s *Summary) error {
	if s.Schema == 0 {
		s.Schema = SchemaVersion
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return WriteJSONFile(filepath.Join(dir, SummaryFile), s, "  ")
}

// Read loads a summary from path, rejecting files of another schema.
func Read(path string) (*Summary, error) {
	s, err := readJSONFile[Summary](path, "summary")
	if err != nil {
		return nil, err
	}
	if s.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d, want %d", path, s.Schema, SchemaVersion)
	}
	return s, nil
}
