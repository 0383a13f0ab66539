package scenarios

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/testenv/local"
)

// ServerSeries is servers.json: every server of one tuning's topology, second by
// second, and its totals over the run. Counts are from the start of the viewers' run.
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
	Role             string  `json:"role"`
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
		if p.Role == local.RoleMirror {
			out = append(out, p)
		}
	}
	return out
}

// ReadServers loads a servers.json.
func ReadServers(path string) (*ServerSeries, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s ServerSeries
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: not a servers series: %w", path, err)
	}
	return &s, nil
}

// serverRecorder keeps the samples of one tuning's run.
type serverRecorder struct {
	tuning string
	names  []string // process names in report order
	topo   relay

	mu      sync.Mutex // protects samples
	samples []local.Sample
}

func newServerRecorder(tuning string, first local.Sample, topo relay) *serverRecorder {
	names := topo.Names()
	return &serverRecorder{tuning: tuning, names: names, topo: topo, samples: []local.Sample{first}}
}

func (r *serverRecorder) add(s local.Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, s)
}

// status is a short line of server figures for progress output.
func (r *serverRecorder) status() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < 2 {
		return ""
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	var up, down, emfile, shed float64
	for _, n := range r.names {
		f, f0 := last.Procs[n], first.Procs[n]
		if f.Role == local.RoleMirror {
			up += f.Upstream - f0.Upstream
			emfile += f.EMFILE - f0.EMFILE
			shed += f.Shed - f0.Shed
			if !f.Up {
				down++
			}
		}
	}
	origin := last.Procs[local.RoleOrigin].Requests - first.Procs[local.RoleOrigin].Requests
	s := fmt.Sprintf("origin requests %.0f  upstream %.0f", origin, up)
	if emfile > 0 || shed > 0 {
		s += fmt.Sprintf("  emfile %.0f  shed %.0f", emfile, shed)
	}
	if down > 0 {
		s += fmt.Sprintf("  mirrors not answering %.0f", down)
	}
	if c, ok := last.Procs[local.RoleCounter]; ok {
		s += fmt.Sprintf("  counter %d", c.Viewers)
	}
	return s
}

// series computes the per-step points and the totals.
func (r *serverRecorder) series() *ServerSeries {
	r.mu.Lock()
	samples := append([]local.Sample(nil), r.samples...)
	r.mu.Unlock()
	out := &ServerSeries{Tuning: r.tuning}
	if len(samples) == 0 {
		return out
	}
	t0 := samples[0].At
	first := samples[0]
	totals := make([]ProcessTotals, len(r.names))
	for i, n := range r.names {
		totals[i] = ProcessTotals{Name: n, Role: first.Procs[n].Role, Kind: first.Procs[n].Kind}
	}
	var steps float64
	for k := 1; k < len(samples); k++ {
		prev, cur := samples[k-1], samples[k]
		dt := cur.At.Sub(prev.At).Seconds()
		if dt <= 0 {
			continue
		}
		steps += dt
		pt := ServerPoint{T: round3(cur.At.Sub(t0).Seconds()), Procs: map[string]ProcessPoint{}}
		for i, n := range r.names {
			f, p := cur.Procs[n], prev.Procs[n]
			pp := ProcessPoint{
				Up: f.Up, OpenFDs: f.OpenFDs, Conns: f.Conns,
				Requests: delta(f.Requests, p.Requests), Upstream: delta(f.Upstream, p.Upstream),
				EMFILE: delta(f.EMFILE, p.EMFILE), Shed: delta(f.Shed, p.Shed),
			}
			// Rates over the process's own interval between its two readings; a short
			// one (a slow scrape followed at once by the next) says little about a rate.
			if pdt := f.At.Sub(p.At).Seconds(); pdt >= minRateInterval {
				pp.CPU = round3(math.Max(0, f.CPUSeconds-p.CPUSeconds) / pdt)
				if f.SentBytes > 0 {
					pp.SentBps = round3(math.Max(0, f.SentBytes-p.SentBytes) * 8 / pdt)
				}
			}
			if f.Role == local.RoleMirror && pp.Requests > 0 {
				h := round3(float64(delta(f.Hits, p.Hits)) / float64(pp.Requests))
				pp.HitRatio = &h
			}
			if f.Role == local.RoleCounter && f.Up {
				v := f.Viewers
				pp.Viewers = &v
			}
			pt.Procs[n] = pp
			tt := &totals[i]
			tt.MaxOpenFDs = max(tt.MaxOpenFDs, f.OpenFDs)
			tt.MaxFDs = max(tt.MaxFDs, f.MaxFDs)
			tt.MaxConns = max(tt.MaxConns, f.Conns)
			tt.MaxViewers = max(tt.MaxViewers, f.Viewers)
			tt.PeakCPU = math.Max(tt.PeakCPU, pp.CPU)
			tt.PeakSentBps = math.Max(tt.PeakSentBps, pp.SentBps)
		}
		out.Points = append(out.Points, pt)
	}
	if len(out.Points) > 0 {
		out.StepS = round3(steps / float64(len(out.Points)))
	}
	last := samples[len(samples)-1]
	for i, n := range r.names {
		f, f0 := last.Procs[n], first.Procs[n]
		tt := &totals[i]
		tt.Requests = delta(f.Requests, f0.Requests)
		tt.Hits = delta(f.Hits, f0.Hits)
		tt.Upstream = delta(f.Upstream, f0.Upstream)
		tt.UpstreamSegments = delta(f.UpstreamSegments, f0.UpstreamSegments)
		tt.UpstreamErrors = delta(f.UpstreamErrors, f0.UpstreamErrors)
		tt.EMFILE = delta(f.EMFILE, f0.EMFILE)
		tt.Shed = delta(f.Shed, f0.Shed)
		tt.SentBytes = delta(f.SentBytes, f0.SentBytes)
		tt.SegmentsBuilt = delta(f.SegmentsBuilt, f0.SegmentsBuilt)
		tt.CPUSeconds = round3(f.CPUSeconds - f0.CPUSeconds)
		if tt.Requests > 0 && tt.Role == local.RoleMirror {
			tt.HitRatio = round3(float64(tt.Hits) / float64(tt.Requests))
		}
		tt.MaxOpenFDs = max(tt.MaxOpenFDs, f.OpenFDs, f0.OpenFDs)
		tt.MaxFDs = max(tt.MaxFDs, f.MaxFDs, f0.MaxFDs)
	}
	// Links and the supervisor's records.
	for i := range totals {
		tt := &totals[i]
		p := r.topo.Server(tt.Name)
		if lr, ok := r.topo.(*localRelay); ok {
			if tt.Name == local.RoleOrigin {
				if fp := lr.OriginFront(); fp != nil {
					tt.ViewerBytes = fp.Stats().BytesDown
				}
			}
			for _, m := range lr.Mirrors() {
				if m.Name == tt.Name {
					tt.UpstreamBytes = m.Upstream.Stats().BytesDown
				}
			}
		}
		if p != nil {
			tt.Runs, tt.Crashes = p.Runs(), p.Crashes()
			for _, e := range p.Exits() {
				if e.Crash() && e.Fatal != "" {
					tt.Fatal = e.Fatal
				}
			}
		}
	}
	out.Processes = totals
	return out
}

// minRateInterval is the shortest interval between two readings of a process that a
// rate (CPU, bits per second) is computed over.
const minRateInterval = 0.5

func delta(cur, prev float64) int64 { return int64(math.Max(0, math.Round(cur-prev))) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// serverFigures writes the servers' side of summary.json into t.
func serverFigures(t *report.Tuning, ss *ServerSeries) {
	t.Mirrors = nil
	for _, p := range ss.Processes {
		switch p.Role {
		case local.RoleOrigin:
			t.Origin.Requests = p.Requests
		case local.RoleMirror:
			t.Mirrors = append(t.Mirrors, report.MirrorFigure{
				Name: p.Name, Kind: p.Kind, HitRatio: p.HitRatio, UpstreamRequests: p.Upstream,
				MaxOpenFDs: p.MaxOpenFDs, EMFILE: p.EMFILE, Shed: p.Shed,
			})
		case local.RoleCounter:
			t.Counter.Crashes = int64(p.Crashes)
		}
	}
	if t.Mirrors == nil {
		t.Mirrors = []report.MirrorFigure{}
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
