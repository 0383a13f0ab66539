package scenarios

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/stampede-live/stampede/testenv/nginx"
)

// Limits Validate enforces. They keep a typo (60000 mirrors, a 6h run) from starting
// something the machine cannot hold; none of them is a real relay's limit.
const (
	maxMirrors    = 64
	maxViewers    = 1_000_000
	maxRunLength  = 24 * time.Hour
	maxTunings    = 32
	maxRTT        = 10 * time.Second
	maxNofile     = 1 << 20
	maxGOMAXPROCS = 1024
	maxRenditions = 6 // the origin's ladder (servers/origin.MaxRenditions)
	maxWindow     = 1000
)

var (
	namePattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	tuningPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	flagNamePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)
	mirrorTarget    = regexp.MustCompile(`^mirror-([1-9][0-9]*)$`)
)

func validTuningName(s string) bool { return tuningPattern.MatchString(s) }

// reservedFlags are flags the runner sets itself (from the topology or a typed field),
// per role; setting them through `flags` would silently fight the runner.
var reservedFlags = map[string]map[string]string{
	"origin": {
		"listen": "", "label": "", "nofile": "origin.nofile",
		"segment-duration": "stream.segment_duration", "window": "stream.window",
		"renditions": "stream.renditions", "bitrate": "stream.bitrate",
	},
	"mirror": {
		"listen": "", "label": "", "upstream": "", "nofile": "mirror.nofile",
		"playlist-ttl": "mirror.playlist_ttl", "segment-ttl": "mirror.segment_ttl",
		"cache-size": "mirror.cache_size", "max-conns": "mirror.max_conns",
		"coalesce": "mirror.coalesce", "stale-if-error": "mirror.stale_if_error",
	},
	"counter": {
		"listen": "", "label": "", "nofile": "counter.nofile",
		"store": "counter.store", "expire": "counter.expire", "sweep": "counter.sweep",
	},
	"viewers": {
		"url": "", "mirror": "", "counter": "", "out": "", "label": "",
		"viewers": "viewers.count", "duration": "duration", "ramp": "viewers.arrivals",
		"heartbeat": "viewers.heartbeat",
	},
}

// validator collects problems with their paths; the scenario's line map locates them.
type validator struct {
	s    *Scenario
	errs ErrorList
	// base holds the base settings' problems, so a tuning that inherits a bad value is
	// not reported again for it.
	base map[string]bool
	// prefix is "" for the base settings and "tunings[i]." inside a tuning.
	prefix string
	// collect, when set, receives problems instead of errs (the base pass).
	collect map[string]bool
}

func (v *validator) errorf(rel, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if v.collect != nil {
		v.collect[rel+"\x00"+msg] = true
	}
	full := v.prefix + rel
	if v.prefix != "" && v.base[rel+"\x00"+msg] && !v.s.has(full) {
		return // inherited from the base settings, reported there
	}
	if len(v.errs) >= maxErrors {
		return
	}
	v.errs = append(v.errs, &FieldError{File: v.s.File, Line: v.s.lineOf(full), Path: strings.TrimSuffix(full, "."), Msg: msg})
}

func (s *Scenario) has(path string) bool {
	_, ok := s.lines[path]
	return ok
}

// lineOf returns the line of path or, when the field was not written (it holds a
// default), of its nearest written ancestor; the top-level mapping is path "".
func (s *Scenario) lineOf(path string) int {
	for p := path; ; p = parentPath(p) {
		if l, ok := s.lines[p]; ok {
			return l
		}
		if p == "" {
			return 0
		}
	}
}

// Validate checks the resolved scenario: ranges, combinations of fields, fault targets,
// threshold references. Errors name the field path and, for a parsed file, the line.
// Call it again after changing a scenario in code (Select, SetViewers).
func (s *Scenario) Validate() error {
	v := &validator{s: s, base: map[string]bool{}}

	if s.Name == "" {
		v.errorf("name", "required (a short word naming the scenario)")
	} else if !namePattern.MatchString(s.Name) {
		v.errorf("name", "%q: use lower-case letters, digits, '.', '-' and '_'", s.Name)
	}
	run := s.Duration.D()
	if run <= 0 {
		v.errorf("duration", "must be more than 0")
	} else if run > maxRunLength {
		v.errorf("duration", "%s is more than %s", run, maxRunLength)
	}

	// Base settings first, recording their problems so tunings do not repeat them.
	v.collect = v.base
	v.settings(&s.Settings, run)
	v.collect = nil

	if len(s.Tunings) == 0 {
		if s.lines == nil {
			v.errorf("tunings", "none: a scenario built in code needs at least one (Parse adds %q to a file that lists none)", DefaultTuningName)
		} else {
			v.errorf("tunings", "empty list; leave the field out for one default tuning")
		}
	}
	if len(s.Tunings) > maxTunings {
		v.errorf("tunings", "%d tunings; at most %d", len(s.Tunings), maxTunings)
	}
	names := map[string]bool{}
	for i := range s.Tunings {
		t := &s.Tunings[i]
		v.prefix = fmt.Sprintf("tunings[%d].", i)
		switch {
		case t.Name == "":
			v.errorf("name", "required")
		case !validTuningName(t.Name):
			v.errorf("name", "%q: use lower-case letters, digits, '-' and '_' (it names result files and labels)", t.Name)
		case names[t.Name]:
			v.errorf("name", "%q used by two tunings", t.Name)
		}
		names[t.Name] = true
		v.settings(&t.Settings, run)
	}
	v.prefix = ""
	for i := range s.Tunings {
		t := &s.Tunings[i]
		v.thresholds(fmt.Sprintf("tunings[%d].thresholds", i), t.Thresholds, names, true)
		v.thresholds(fmt.Sprintf("tunings[%d].expect", i), t.Expect, names, true)
	}
	v.thresholds("thresholds", s.Thresholds, names, true)
	v.thresholds("slo", s.SLO, names, false)
	v.faults(run)
	v.capacity()

	if len(v.errs) == 0 {
		return nil
	}
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	return v.errs
}

func (v *validator) settings(st *Settings, run time.Duration) {
	tp := st.Topology
	switch {
	case tp.Mirrors < 0, tp.Mirrors > maxMirrors:
		v.errorf("topology.mirrors", "%d: want 1 to %d", tp.Mirrors, maxMirrors)
	case tp.Mirrors == 0 && !tp.OriginExposed:
		v.errorf("topology.mirrors", "0 mirrors and the origin not exposed: viewers would have nowhere to go")
	}
	v.rtts("topology.rtt", tp.RTT, tp.Mirrors)
	v.rtts("topology.upstream_rtt", tp.UpstreamRTT, tp.Mirrors)
	if tp.OriginRTT > 0 && !tp.OriginExposed {
		v.errorf("topology.origin_rtt", "set, but topology.origin_exposed is false (viewers never reach the origin)")
	}
	if tp.OriginUplink != 0 && tp.OriginUplink < 100_000 {
		v.errorf("topology.origin_uplink", "%s: want 0 (unlimited) or at least 100k bits per second", tp.OriginUplink)
	}
	if tp.OriginRTT.D() > maxRTT {
		v.errorf("topology.origin_rtt", "%s is more than %s", tp.OriginRTT, maxRTT)
	}

	sm := st.Stream
	if d := sm.SegmentDuration.D(); d < 100*time.Millisecond || d > time.Minute {
		v.errorf("stream.segment_duration", "%s: want 100ms to 1m", d)
	}
	if sm.Renditions < 1 || sm.Renditions > maxRenditions {
		v.errorf("stream.renditions", "%d: want 1 to %d", sm.Renditions, maxRenditions)
	}
	if sm.Bitrate < 10_000 || sm.Bitrate > 100_000_000 {
		v.errorf("stream.bitrate", "%s: want 10k to 100M bits per second", sm.Bitrate)
	}
	if sm.Window < 3 || sm.Window > maxWindow {
		// Players start three target durations behind the live edge (RFC 8216 §6.3.3).
		v.errorf("stream.window", "%d: want 3 to %d segments (players start 3 segments behind the live edge)", sm.Window, maxWindow)
	}

	vw := st.Viewers
	if vw.Count < 1 || vw.Count > maxViewers {
		v.errorf("viewers.count", "%d: want 1 to %d", vw.Count, maxViewers)
	}
	a := vw.Arrivals
	switch a.Kind {
	case ArrivalRamp, ArrivalFlash:
		if a.Rate != 0 {
			v.errorf("viewers.arrivals.rate", "only poisson arrivals take a rate (%s arrivals spread viewers.count over arrivals.over)", a.Kind)
		}
		if run > 0 && a.At.D()+a.Over.D() > run {
			v.errorf("viewers.arrivals.over", "arrivals end at %s, after the run's %s", a.At.D()+a.Over.D(), run)
		}
	case ArrivalPoisson:
		if a.Rate <= 0 {
			v.errorf("viewers.arrivals.rate", "poisson arrivals need a rate (e.g. 50/s)")
		}
		if a.Over != 0 {
			v.errorf("viewers.arrivals.over", "not used by poisson arrivals (they continue at arrivals.rate until viewers.count have arrived)")
		}
	}
	if run > 0 && a.At.D() >= run {
		v.errorf("viewers.arrivals.at", "%s is not before the end of the run (%s)", a.At, run)
	}
	v.session(vw.Session)
	if hb := vw.Heartbeat.D(); hb != 0 && hb < 100*time.Millisecond {
		v.errorf("viewers.heartbeat", "%s: want 0 (off) or at least 100ms", hb)
	}
	v.flags("viewers", vw.Flags)

	v.process("origin", st.Origin.Process, true)
	v.process("mirror", st.Mirror.Process, st.Mirror.Kind == MirrorStampede)
	v.process("counter", st.Counter.Process, true)
	if _, err := swarmConfig(*st, run); err != nil {
		v.errorf(flagPath(err, "viewers.flags"), "%s", flagMsg(err))
	}
	m := st.Mirror
	if m.Kind == MirrorNginx {
		nt, err := nginxTuning("check", m)
		if err == nil {
			// Render validates what nginx would reject (sizes, whole seconds).
			_, err = nginx.Render(nt, "http://127.0.0.1:1", "127.0.0.1:2", "/check")
		}
		if err != nil {
			v.errorf(flagPath(err, "mirror"), "%s", flagMsg(err))
		}
	}
	if m.MaxConns < 0 {
		v.errorf("mirror.max_conns", "%d: must not be negative", m.MaxConns)
	}
	if m.CacheSize < 0 {
		v.errorf("mirror.cache_size", "must not be negative")
	}
}

// flagPath and flagMsg split "viewers.flags.seed: bad value" into the field path and
// the message; errors without a path are about the whole of fallback.
func flagPath(err error, fallback string) string {
	path, _, ok := strings.Cut(err.Error(), ": ")
	if !ok || strings.ContainsRune(path, ' ') {
		return fallback
	}
	if !strings.HasPrefix(path, fallback) {
		path = fallback + "." + path
	}
	return path
}

func flagMsg(err error) string {
	path, msg, ok := strings.Cut(err.Error(), ": ")
	if !ok || strings.ContainsRune(path, ' ') {
		return err.Error()
	}
	return msg
}

func (v *validator) rtts(path string, l []Duration, mirrors int) {
	if len(l) > mirrors {
		v.errorf(path, "%d entries for %d mirrors", len(l), mirrors)
	}
	for i, d := range l {
		if d.D() > maxRTT {
			v.errorf(fmt.Sprintf("%s[%d]", path, i), "%s is more than %s", d, maxRTT)
		}
	}
}

func (v *validator) session(s Session) {
	set := map[string]bool{"length": s.Length != 0, "mean": s.Mean != 0, "min": s.Min != 0, "max": s.Max != 0}
	want := map[SessionKind][]string{
		SessionWhole:       nil,
		SessionFixed:       {"length"},
		SessionExponential: {"mean"},
		SessionUniform:     {"min", "max"},
	}[s.Kind]
	for _, f := range []string{"length", "mean", "min", "max"} {
		needed := false
		for _, w := range want {
			needed = needed || w == f
		}
		switch {
		case needed && !set[f]:
			v.errorf("viewers.session."+f, "required by %s sessions (more than 0)", s.Kind)
		case !needed && set[f]:
			v.errorf("viewers.session."+f, "not used by %s sessions", s.Kind)
		}
	}
	if s.Kind == SessionUniform && s.Min > s.Max {
		v.errorf("viewers.session.min", "%s is more than max %s", s.Min, s.Max)
	}
}

func (v *validator) process(role string, p Process, goProgram bool) {
	if p.Nofile != 0 && (p.Nofile < 64 || p.Nofile > maxNofile) {
		v.errorf(role+".nofile", "%d: want 0 (inherit) or 64 to %d", p.Nofile, maxNofile)
	}
	if p.GOMAXPROCS < 0 || p.GOMAXPROCS > maxGOMAXPROCS {
		v.errorf(role+".gomaxprocs", "%d: want 0 (inherit) to %d", p.GOMAXPROCS, maxGOMAXPROCS)
	}
	if p.GOMAXPROCS != 0 && !goProgram {
		v.errorf(role+".gomaxprocs", "nginx mirrors are not Go programs; set flags.worker_processes instead")
	}
	v.flags(role, p.Flags)
}

func (v *validator) flags(role string, f Flags) {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := role + ".flags." + k
		if !flagNamePattern.MatchString(k) {
			v.errorf(path, "bad flag name %q: lower-case words joined by '-', without leading dashes", k)
			continue
		}
		if typed, reserved := reservedFlags[role][k]; reserved {
			if typed == "" {
				v.errorf(path, "set by the runner from the topology; it cannot be overridden")
			} else {
				v.errorf(path, "use the field %s instead", typed)
			}
		}
	}
}

func (v *validator) thresholds(path string, l []Threshold, tunings map[string]bool, refsAllowed bool) {
	for i, th := range l {
		if th.Ref == nil {
			continue
		}
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case !refsAllowed:
			v.errorf(p, "%q compares with another tuning; the capacity SLO runs one tuning at a time", th.text)
		case !tunings[th.Ref.Tuning]:
			v.errorf(p, "%q: no tuning %q in this scenario", th.text, th.Ref.Tuning)
		}
	}
}

func (v *validator) faults(run time.Duration) {
	for i, f := range v.s.Faults {
		p := fmt.Sprintf("faults[%d].", i)
		if f.Action == "" {
			v.errorf(p+"action", "required (one of %s)", joinEnum(FaultActions))
			continue
		}
		if run > 0 && f.At.D() >= run {
			v.errorf(p+"at", "%s is not before the end of the run (%s)", f.At, run)
		}
		hasUntil := f.Action == FaultStop || f.Action == FaultDelay
		if f.Until != 0 && !hasUntil {
			v.errorf(p+"until", "only stop and delay last until a time")
		}
		if f.Until != 0 && f.Until <= f.At {
			v.errorf(p+"until", "%s is not after at (%s)", f.Until, f.At)
		}
		if run > 0 && f.Until.D() > run {
			v.errorf(p+"until", "%s is after the end of the run (%s)", f.Until, run)
		}
		if f.Action == FaultDelay && f.Delay <= 0 {
			v.errorf(p+"delay", "a delay fault needs delay (the round trip added, e.g. 300ms)")
		}
		if f.Action != FaultDelay && f.Delay != 0 {
			v.errorf(p+"delay", "only delay faults take a delay")
		}
		if f.Delay.D() > maxRTT {
			v.errorf(p+"delay", "%s is more than %s", f.Delay, maxRTT)
		}
		v.faultTarget(p+"target", f)
	}
}

func (v *validator) faultTarget(path string, f Fault) {
	if f.Target == "" {
		v.errorf(path, "required (origin, counter or mirror-N)")
		return
	}
	m := mirrorTarget.FindStringSubmatch(f.Target)
	if f.Action == FaultDelay && m == nil {
		v.errorf(path, "%q: delay slows a mirror's upstream link; target a mirror (mirror-N)", f.Target)
		return
	}
	if m == nil {
		if f.Target != RoleOrigin && f.Target != RoleCounter {
			v.errorf(path, "unknown process %q (want origin, counter or mirror-N)", f.Target)
		}
		return
	}
	n := 0
	fmt.Sscan(m[1], &n)
	for _, t := range v.s.Tunings {
		if n > t.Topology.Mirrors {
			v.errorf(path, "%q, but tuning %q runs %d mirrors", f.Target, t.Name, t.Topology.Mirrors)
			return
		}
	}
}

func (v *validator) capacity() {
	c := v.s.Capacity
	if c.Start < 1 {
		v.errorf("capacity.start", "%d: want at least 1", c.Start)
	}
	if c.Step < 1 {
		v.errorf("capacity.step", "%d: want at least 1", c.Step)
	}
	if c.Max < c.Start || c.Max > maxViewers {
		v.errorf("capacity.max", "%d: want from capacity.start (%d) to %d", c.Max, c.Start, maxViewers)
	}
	if c.Resolution < 1 {
		v.errorf("capacity.resolution", "%d: want at least 1", c.Resolution)
	}
	if c.StepDuration <= 0 {
		v.errorf("capacity.step_duration", "must be more than 0")
	}
}

func joinEnum[T ~string](l []T) string {
	s := make([]string, len(l))
	for i, x := range l {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}
