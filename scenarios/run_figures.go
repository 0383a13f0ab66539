package scenarios

import (
	"fmt"
	"math"
	"sync"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/testenv/local"
)

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
func (r *serverRecorder) series() *report.ServerSeries {
	r.mu.Lock()
	samples := append([]local.Sample(nil), r.samples...)
	r.mu.Unlock()
	out := &report.ServerSeries{Tuning: r.tuning}
	if len(samples) == 0 {
		return out
	}
	t0 := samples[0].At
	first := samples[0]
	totals := make([]report.ProcessTotals, len(r.names))
	for i, n := range r.names {
		totals[i] = report.ProcessTotals{Name: n, Role: first.Procs[n].Role, Kind: first.Procs[n].Kind}
	}
	var steps float64
	for k := 1; k < len(samples); k++ {
		prev, cur := samples[k-1], samples[k]
		dt := cur.At.Sub(prev.At).Seconds()
		if dt <= 0 {
			continue
		}
		steps += dt
		pt := report.ServerPoint{T: round3(cur.At.Sub(t0).Seconds()), Procs: map[string]report.ProcessPoint{}}
		for i, n := range r.names {
			f, p := cur.Procs[n], prev.Procs[n]
			pp := report.ProcessPoint{
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
func serverFigures(t *report.Tuning, ss *report.ServerSeries) {
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
