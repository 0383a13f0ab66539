package scenarios

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/testenv/local"
)

// CapacityFile is where `stampede capacity` writes its result, beside one directory
// per step.
const CapacityFile = "capacity.json"

// Resources that can run out first (CapacityResult.Limit.Resource).
const (
	LimitGenerator   = "generator"   // the load generator fell behind: the machine cannot measure further
	LimitFDs         = "fds"         // a mirror ran out of file descriptors (EMFILE) or nearly so
	LimitConnections = "connections" // a mirror refused connections at its limit
	LimitBandwidth   = "bandwidth"   // the origin's uplink was full
	LimitCPU         = "cpu"         // the machine's cores were busy
	LimitNone        = "none"        // nothing visibly ran out: latency alone broke the SLO
)

// Thresholds of "ran out": a resource this close to its limit in the failing step is
// what gave.
const (
	fdExhausted     = 0.95 // open files / limit
	cpuExhausted    = 0.85 // busy share of every core
	uplinkExhausted = 0.90 // bits sent / uplink capacity
)

// CapacityConfig configures a capacity search.
type CapacityConfig struct {
	// RunConfig is how each step runs; Dir is the search's directory (a directory per
	// step inside it) and Reporters are not used.
	RunConfig
	// Tuning is the tuning searched (default the scenario's first).
	Tuning string
	// SLO must hold at every step; default the scenario's (CapacitySLO).
	SLO []Threshold
	// Start, Step, Max, Resolution and StepDuration override the scenario's capacity
	// settings when non-zero.
	Start, Step, Max, Resolution int
	StepDuration                 time.Duration
}

// CapacityResult is the outcome of a search.
type CapacityResult struct {
	Scenario string   `json:"scenario"`
	Tuning   string   `json:"tuning"`
	SLO      []string `json:"slo"`
	// Highest is the most viewers that held the SLO (0: even the first step failed).
	Highest int `json:"highest_passing"`
	// FirstFailure is the fewest viewers that broke it (0: none up to Max did).
	FirstFailure int `json:"first_failure,omitempty"`
	// Limit is what ran out first, judged at FirstFailure.
	Limit Limit `json:"limit"`
	// Planner are the per-mirror figures at Highest (at the first step when none passed).
	Planner    Planner        `json:"planner"`
	Steps      []CapacityStep `json:"steps"`
	Incomplete bool           `json:"incomplete,omitempty"`
}

// Limit names what ran out first and why the search thinks so.
type Limit struct {
	Resource string `json:"resource"`
	Detail   string `json:"detail"`
}

// Planner are the figures someone sizing mirrors needs.
type Planner struct {
	Viewers int `json:"viewers"`
	Mirrors int `json:"mirrors"`
	// ViewersPerMirror is the busiest mirror's peak client connections.
	ViewersPerMirror int64 `json:"viewers_per_mirror"`
	// MbitPerMirror is the busiest mirror's sending rate once every viewer had arrived
	// (stampede mirrors; 0 for nginx, which does not report it). Joining viewers fill
	// their buffers in a burst, so the peak during arrivals is higher: PeakMbitPerMirror.
	MbitPerMirror     float64 `json:"mbit_per_mirror"`
	PeakMbitPerMirror float64 `json:"peak_mbit_per_mirror"`
	// FDsPer1000 is the open files a mirror holds per 1,000 of its viewers.
	FDsPer1000 float64 `json:"fds_per_1000_viewers"`
	// CPUPer1000 is the cores the whole relay (every server) used per 1,000 viewers.
	CPUPer1000 float64 `json:"cpu_per_1000_viewers"`
}

// CapacityStep is one run of the search.
type CapacityStep struct {
	Viewers    int       `json:"viewers"`
	Pass       bool      `json:"pass"`
	Failed     []string  `json:"failed,omitempty"` // the SLO checks that did not hold
	Bound      bool      `json:"generator_bound"`
	SegmentP99 float64   `json:"segment_p99_ms"`
	Stalls     int64     `json:"stalls"`
	Errors     int64     `json:"errors"`
	Resources  Resources `json:"resources"`
	Dir        string    `json:"dir"`
}

// Resources are what a step used of what could run out.
type Resources struct {
	Cores float64 `json:"cores"` // this machine's
	// ServersCPU and GeneratorCPU are cores busy on average over the step; MachineBusy
	// is the whole machine's busy share (other work included).
	ServersCPU   float64 `json:"servers_cpu"`
	GeneratorCPU float64 `json:"generator_cpu"`
	MachineBusy  float64 `json:"machine_busy"`
	// FDUse is the fullest mirror's open files over its limit.
	FDUse  float64 `json:"fd_use"`
	EMFILE int64   `json:"emfile"`
	Shed   int64   `json:"shed"`
	// UplinkUse is the origin's uplink use over its capacity (0 when unlimited).
	UplinkUse float64 `json:"uplink_use"`
	Planner   Planner `json:"planner"`
}

// stepFunc runs one step; tests replace it to test the search without servers.
type stepFunc func(ctx context.Context, viewers int) (CapacityStep, error)

// FindCapacity finds the most viewers tuning cfg.Tuning of s holds its SLO with: it starts
// at Start, adds Step until a step fails or Max passes, then bisects between the last
// pass and the first failure until they are within Resolution. A step whose load
// generator was bound ends the search: beyond it this machine cannot measure.
func FindCapacity(ctx context.Context, s *Scenario, cfg CapacityConfig) (*CapacityResult, error) {
	c := s.Capacity
	if cfg.Start > 0 {
		c.Start = cfg.Start
	}
	if cfg.Step > 0 {
		c.Step = cfg.Step
	}
	if cfg.Max > 0 {
		c.Max = cfg.Max
	}
	if cfg.Resolution > 0 {
		c.Resolution = cfg.Resolution
	}
	if cfg.StepDuration > 0 {
		c.StepDuration = Duration(cfg.StepDuration)
	}
	if c.Max < c.Start {
		return nil, fmt.Errorf("capacity: max %d is below start %d", c.Max, c.Start)
	}
	name := cfg.Tuning
	if name == "" {
		name = s.Tunings[0].Name
	}
	if err := s.Select(name); err != nil {
		return nil, err
	}
	slo := cfg.SLO
	if len(slo) == 0 {
		slo = s.CapacitySLO()
	}
	if len(slo) == 0 {
		return nil, errors.New("capacity: no SLO (give --slo, or slo:/thresholds: in the scenario)")
	}
	for _, th := range slo {
		if th.Ref != nil {
			return nil, fmt.Errorf("capacity: SLO %q compares with another tuning; a capacity step runs one tuning", th)
		}
	}
	s.Thresholds, s.SLO = slo, nil
	s.Tunings[0].Thresholds, s.Tunings[0].Expect = nil, nil
	s.SetDuration(c.StepDuration.D())
	s.SetViewers(c.Start)
	if err := s.Validate(); err != nil {
		return nil, err
	}
	res := &CapacityResult{Scenario: s.Name, Tuning: name}
	for _, th := range slo {
		res.SLO = append(res.SLO, th.String())
	}
	step := func(ctx context.Context, viewers int) (CapacityStep, error) {
		return runStep(ctx, s, cfg.RunConfig, viewers)
	}
	err := search(ctx, c, step, res, cfg.Progress)
	if werr := report.WriteJSONFile(filepath.Join(cfg.Dir, CapacityFile), res, " "); werr != nil && err == nil {
		err = werr
	}
	return res, err
}

// search runs the steps and fills res.
func search(ctx context.Context, c Capacity, step stepFunc, res *CapacityResult, progress io.Writer) error {
	say := func(format string, a ...any) {
		if progress != nil {
			fmt.Fprintf(progress, format, a...)
		}
	}
	var failing *CapacityStep
	var passing *CapacityStep
	run := func(n int) (*CapacityStep, error) {
		say("capacity: step %d viewers\n", n)
		st, err := step(ctx, n)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, st)
		verdict := "holds"
		if !st.Pass {
			verdict = "breaks: " + strings.Join(st.Failed, ", ")
		}
		say("capacity: %d viewers: SLO %s\n", n, verdict)
		return &res.Steps[len(res.Steps)-1], nil
	}
	interrupted := func(err error) error {
		if ctx.Err() != nil || errors.Is(err, ErrInterrupted) {
			res.Incomplete = true
			return fmt.Errorf("%w: the result covers the steps that finished", ErrInterrupted)
		}
		return err
	}

	lo, hi := 0, 0 // last pass, first failure
	for n := c.Start; n <= c.Max; n += c.Step {
		st, err := run(n)
		if err != nil {
			finishSearch(res, lo, hi, passing, failing)
			return interrupted(err)
		}
		if !st.Pass {
			hi, failing = n, st
			break
		}
		lo, passing = n, st
		if n < c.Max && n+c.Step > c.Max {
			n = c.Max - c.Step // the last step is Max itself
		}
	}
	for hi > 0 && hi-lo > c.Resolution && !failing.Bound {
		mid := lo + (hi-lo)/2
		st, err := run(mid)
		if err != nil {
			finishSearch(res, lo, hi, passing, failing)
			return interrupted(err)
		}
		if st.Pass {
			lo, passing = mid, st
		} else {
			hi, failing = mid, st
		}
	}
	finishSearch(res, lo, hi, passing, failing)
	return nil
}

func finishSearch(res *CapacityResult, lo, hi int, passing, failing *CapacityStep) {
	res.Highest, res.FirstFailure = lo, hi
	switch {
	case passing != nil:
		res.Planner = passing.Resources.Planner
	case failing != nil:
		res.Planner = failing.Resources.Planner
	}
	if failing != nil {
		res.Limit = limitOf(failing)
	} else {
		res.Limit = Limit{Resource: LimitNone, Detail: "the SLO held at every step up to the maximum"}
	}
}

// limitOf judges what ran out in a failing step, most certain first.
func limitOf(st *CapacityStep) Limit {
	r := st.Resources
	switch {
	case st.Bound:
		return Limit{LimitGenerator, fmt.Sprintf("the load generator fell behind at %d viewers (%.2f cores): the relay may hold more than this machine can measure", st.Viewers, r.GeneratorCPU)}
	case r.EMFILE > 0 || r.FDUse >= fdExhausted:
		return Limit{LimitFDs, fmt.Sprintf("a mirror ran out of file descriptors (%d EMFILE, fullest at %.0f%% of its open-files limit)", r.EMFILE, r.FDUse*100)}
	case r.Shed > 0:
		return Limit{LimitConnections, fmt.Sprintf("mirrors refused %d connections at their connection limit", r.Shed)}
	case r.UplinkUse >= uplinkExhausted:
		return Limit{LimitBandwidth, fmt.Sprintf("the origin's uplink was %.0f%% full", r.UplinkUse*100)}
	case r.Cores > 0 && ((r.ServersCPU+r.GeneratorCPU)/r.Cores >= cpuExhausted || r.MachineBusy >= cpuExhausted):
		return Limit{LimitCPU, fmt.Sprintf("CPU: servers %.2f + generator %.2f of %.0f cores, machine %.0f%% busy", r.ServersCPU, r.GeneratorCPU, r.Cores, r.MachineBusy*100)}
	}
	return Limit{LimitNone, fmt.Sprintf("nothing measured ran out (CPU %.0f%% busy, fullest mirror at %.0f%% of its files): %s",
		r.MachineBusy*100, r.FDUse*100, strings.Join(st.Failed, ", "))}
}

// runStep runs the scenario's one tuning with n viewers and judges the SLO.
func runStep(ctx context.Context, s *Scenario, rc RunConfig, n int) (CapacityStep, error) {
	s.SetViewers(n)
	if err := s.Validate(); err != nil {
		return CapacityStep{}, err
	}
	rc.Dir = filepath.Join(rc.Dir, fmt.Sprintf("step-%d", n))
	rc.Run = filepath.Base(filepath.Dir(rc.Dir)) + "-" + strconv.Itoa(n)
	rc.Reporters = nil
	cpu0, _ := machineCPU()
	res, err := Run(ctx, s, rc)
	cpu1, _ := machineCPU()
	if res == nil || len(res.Summary.Tunings) == 0 || len(res.Tunings) == 0 || res.Tunings[0].Servers == nil {
		if err == nil {
			err = errors.New("the step measured nothing")
		}
		return CapacityStep{}, err
	}
	t := &res.Summary.Tunings[0]
	st := CapacityStep{
		Viewers: n, Pass: t.Pass && !res.Summary.Incomplete, Bound: t.Generator.Bound,
		SegmentP99: t.LatencyMs.Segment.P99, Stalls: t.Stalls.Count, Errors: t.Errors.Total, Dir: rc.Dir,
	}
	for _, g := range t.Gates {
		if !g.Pass {
			st.Failed = append(st.Failed, fmt.Sprintf("%s (%s)", g.Threshold, formatValue(g.Name, g.Value)))
		}
	}
	if st.Bound {
		st.Failed = append(st.Failed, "generator bound")
	}
	st.Resources = resources(t, res.Tunings[0].Servers, s.Tunings[0].Settings, cpu1.sub(cpu0))
	return st, err
}

// resources sums up what a step used.
func resources(t *report.Tuning, ss *report.ServerSeries, st Settings, machine cpuTimes) Resources {
	r := Resources{Cores: float64(runtime.NumCPU()), MachineBusy: machine.busyShare()}
	a := st.Viewers.Arrivals
	arrived := (a.At.D() + a.Over.D()).Seconds()
	dur := t.DurationS
	if dur <= 0 {
		return r
	}
	var serverCPU float64
	var linkBytes int64
	p := Planner{Viewers: t.Viewers.Target, Mirrors: len(ss.Mirrors())}
	var fds, conns int64
	for _, pr := range ss.Processes {
		serverCPU += pr.CPUSeconds
		linkBytes += pr.UpstreamBytes + pr.ViewerBytes
		if pr.Role != local.RoleMirror {
			continue
		}
		r.EMFILE += pr.EMFILE
		r.Shed += pr.Shed
		if pr.MaxFDs > 0 {
			r.FDUse = math.Max(r.FDUse, float64(pr.MaxOpenFDs)/float64(pr.MaxFDs))
		}
		p.ViewersPerMirror = max(p.ViewersPerMirror, pr.MaxConns)
		p.PeakMbitPerMirror = math.Max(p.PeakMbitPerMirror, round3(pr.PeakSentBps/1e6))
		p.MbitPerMirror = math.Max(p.MbitPerMirror, round3(steadyRate(ss, pr.Name, arrived)/1e6))
		fds += pr.MaxOpenFDs
		conns += pr.MaxConns
	}
	if conns > 0 {
		p.FDsPer1000 = round3(float64(fds) / float64(conns) * 1000)
	}
	r.ServersCPU = round3(serverCPU / dur)
	r.GeneratorCPU = round3(t.Generator.CPUSeconds / dur)
	if t.Viewers.Target > 0 {
		p.CPUPer1000 = round3(r.ServersCPU / float64(t.Viewers.Target) * 1000)
	}
	if up := float64(st.Topology.OriginUplink); up > 0 {
		r.UplinkUse = round3(float64(linkBytes) * 8 / dur / up)
	}
	r.Planner = p
	return r
}

// steadyRate is a mirror's mean sending rate in bits/s over the steps after every
// viewer had arrived (all steps when none came after).
func steadyRate(ss *report.ServerSeries, name string, arrived float64) float64 {
	var sum float64
	var n int
	for _, pass := range []float64{arrived, -1} {
		for _, pt := range ss.Points {
			if pt.T > pass {
				sum += pt.Procs[name].SentBps
				n++
			}
		}
		if n > 0 {
			return sum / float64(n)
		}
	}
	return 0
}

// cpuTimes is the first line of /proc/stat: jiffies per state, summed over cores.
type cpuTimes struct{ busy, total float64 }

func (c cpuTimes) sub(o cpuTimes) cpuTimes { return cpuTimes{c.busy - o.busy, c.total - o.total} }

func (c cpuTimes) busyShare() float64 {
	if c.total <= 0 {
		return 0
	}
	return round3(c.busy / c.total)
}

// machineCPU reads the machine's CPU time from /proc/stat.
func machineCPU() (cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPULine(line)
}

// parseCPULine reads "cpu  user nice system idle iowait irq softirq steal …"; idle and
// iowait are not busy.
func parseCPULine(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var c cpuTimes
	for i, s := range f[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 {
			return cpuTimes{}, fmt.Errorf("/proc/stat: bad field %q", s)
		}
		c.total += v
		if i != 3 && i != 4 { // idle, iowait
			c.busy += v
		}
	}
	return c, nil
}
