package report

import (
	"path/filepath"
)

// ServersFile is the servers' per-second series `stampede bench` writes into each
// tuning's directory (WriteServers) and the page draws.
const ServersFile = "servers.json"

// ServerSeries is servers.json: every server of one tuning's topology, second by
// second, and its totals over the run. Counts are from the start of the viewers' run.
// The bench runner (package scenarios) writes it; the HTML report reads it.
type ServerSeries struct {
	Tuning string `json:"tuning"`
	// StepS is the scrape interval in seconds.
	StepS float64 `json:"step_s"`
	// Processes are the totals, origin first, then the mirrors in order, then the counter.
	Processes []ProcessTotals `json:"processes"`
	Points    []ServerPoint   `json:"points"`
}

// ServerPoint is every server at one scrape.
type ServerPoint struct {
	T     float64                 `json:"t"` // seconds since the viewers' run began
	Procs map[string]ProcessPoint `json:"procs"`
}

// ProcessPoint is one server during one step: counts are events within the step,
// levels are as of its end.
type ProcessPoint struct {
	Up       bool  `json:"up"` // answered its scrape
	OpenFDs  int64 `json:"open_fds"`
	Conns    int64 `json:"conns,omitempty"` // mirrors: open client connections
	Requests int64 `json:"requests"`
	Upstream int64 `json:"upstream_requests,omitempty"`
	// HitRatio is the share of the step's requests a mirror answered from its cache;
	// absent when it had none.
	HitRatio *float64 `json:"hit_ratio,omitempty"`
	EMFILE   int64    `json:"emfile,omitempty"`
	Shed     int64    `json:"shed,omitempty"`
	CPU      float64  `json:"cpu"`                // cores busy
	SentBps  float64  `json:"sent_bps,omitempty"` // stampede mirrors: bits/s to clients
	Viewers  *int64   `json:"viewers,omitempty"`  // the counter's answer
}

// ProcessTotals are one server's figures over the run.
type ProcessTotals struct {
	Name             string  `json:"name"`
	Role             string  `json:"role"` // origin, mirror, counter
	Kind             string  `json:"kind,omitempty"`
	Requests         int64   `json:"requests"`
	Hits             int64   `json:"hits,omitempty"`
	HitRatio         float64 `json:"hit_ratio,omitempty"`
	Upstream         int64   `json:"upstream_requests,omitempty"`
	UpstreamSegments int64   `json:"upstream_segments,omitempty"`
	UpstreamErrors   int64   `json:"upstream_errors,omitempty"`
	// UpstreamBytes is what the mirror's link from the origin carried.
	UpstreamBytes int64 `json:"upstream_bytes,omitempty"`
	// ViewerBytes is what an exposed origin's link carried to viewers.
	ViewerBytes   int64   `json:"viewer_bytes,omitempty"`
	SentBytes     int64   `json:"sent_bytes,omitempty"`
	SegmentsBuilt int64   `json:"segments_built,omitempty"`
	EMFILE        int64   `json:"emfile,omitempty"`
	Shed          int64   `json:"shed,omitempty"`
	MaxOpenFDs    int64   `json:"max_open_fds"`
	MaxFDs        int64   `json:"max_fds"`
	MaxConns      int64   `json:"max_conns,omitempty"`
	MaxViewers    int64   `json:"max_viewers,omitempty"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	PeakCPU       float64 `json:"peak_cpu"` // cores, busiest step
	PeakSentBps   float64 `json:"peak_sent_bps,omitempty"`
	Runs          int     `json:"runs"`
	Crashes       int     `json:"crashes"`
	// Fatal is the last crash's message (Go's "fatal error: …", nginx's [emerg]).
	Fatal string `json:"fatal,omitempty"`
}

// Server roles, the values of ProcessTotals.Role.
const (
	roleOrigin  = "origin"
	roleMirror  = "mirror"
	roleCounter = "counter"
)

// Process returns the totals of the process called name.
func (s *ServerSeries) Process(name string) (ProcessTotals, bool) {
	for _, p := range s.Processes {
		if p.Name == name {
			return p, true
		}
	}
	return ProcessTotals{}, false
}

// Mirrors returns the mirrors' totals, in order.
func (s *ServerSeries) Mirrors() []ProcessTotals {
	var out []ProcessTotals
	for _, p := range s.Processes {
		if p.Role == roleMirror {
			out = append(out, p)
		}
	}
	return out
}

// processes returns the names of the processes with the given role, in order.
func (s *ServerSeries) processes(role string) []string {
	var out []string
	for _, p := range s.Processes {
		if p.Role == role {
			out = append(out, p.Name)
		}
	}
	return out
}

// WriteServers writes s as dir/servers.json (with WriteFileAtomic); dir must exist.
func WriteServers(dir string, s *ServerSeries) error {
	return WriteJSONFile(filepath.Join(dir, ServersFile), s, " ")
}

// ReadServers loads a servers.json.
func ReadServers(path string) (*ServerSeries, error) {
	return readJSONFile[ServerSeries](path, "servers series")
}
