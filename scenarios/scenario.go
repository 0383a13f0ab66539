// Package scenarios holds the scenario files (`*.yaml`, embedded in the binary) and the
// code that loads and validates them, evaluates their thresholds and gates a run's
// summary.json against thresholds and a baseline.
//
// A scenario is one experiment: a topology (an origin, M mirrors, a counter), a stream,
// a crowd of viewers, a duration, faults on a schedule, and thresholds. Its tunings are
// the variants compared side by side (counter store unsafe vs sharded, mirror nofile
// 1024 vs 65536): each tuning is the scenario's settings with the tuning's overrides
// written on top. The README's "Scenarios" section is the format reference; every field
// is also documented on the Go types below.
//
// Loading is "defaults, then file, then Validate": Parse starts from Default(), decodes
// the file onto it (unknown fields, wrong types and bad values are errors naming the
// field path and line), resolves each tuning, then validates.
package scenarios

import (
	"maps"
	"time"
)

// Defaults. Flag defaults in cmd and the README point here.
const (
	DefaultMirrors         = 3
	DefaultDuration        = 60 * time.Second
	DefaultSegmentDuration = 2 * time.Second
	DefaultRenditions      = 1
	DefaultBitrate         = Bitrate(500_000)
	DefaultWindow          = 6
	DefaultViewers         = 1000
	DefaultRampOver        = 10 * time.Second
	DefaultFlashOver       = 1 * time.Second
	DefaultHeartbeat       = 5 * time.Second // the story's client: every 5 s
	DefaultTuningName      = "default"       // the one tuning of a scenario that lists none
	// Capacity search.
	DefaultCapacityStart        = 500
	DefaultCapacityStep         = 500
	DefaultCapacityMax          = 20000
	DefaultCapacityResolution   = 100
	DefaultCapacityStepDuration = 30 * time.Second
)

// Scenario is one scenario file, resolved.
type Scenario struct {
	// Name identifies the scenario (the file name without .yaml for shipped ones).
	Name string `yaml:"name"`
	// Description is the lesson: what broke in the story and what the tunings show.
	Description string `yaml:"description,omitempty"`
	// Duration is how long each tuning runs, arrivals included.
	Duration Duration `yaml:"duration"`
	// Settings are the base every tuning starts from.
	Settings `yaml:",inline"`
	// Tunings are the variants compared; a scenario without any has one, "default".
	// Each holds fully resolved settings (base + its overrides).
	Tunings []Tuning `yaml:"tunings"`
	// Faults happen on a schedule measured from the start of each tuning's run.
	Faults []Fault `yaml:"faults,omitempty"`
	// Thresholds gate every tuning (summary.json `gates`).
	Thresholds []Threshold `yaml:"thresholds,omitempty"`
	// SLO is what `stampede capacity` must hold at each step; empty means Thresholds.
	SLO []Threshold `yaml:"slo,omitempty"`
	// Capacity tunes the capacity search.
	Capacity Capacity `yaml:"capacity"`

	// File is where the scenario was read from (for messages); not part of the format.
	File string `yaml:"-"`
	// lines maps field paths to lines, so Validate can name the line of a bad value.
	lines map[string]int
}

// Settings are everything a tuning may override.
type Settings struct {
	Topology Topology `yaml:"topology"`
	Stream   Stream   `yaml:"stream"`
	Viewers  Viewers  `yaml:"viewers"`
	Origin   Origin   `yaml:"origin"`
	Mirror   Mirror   `yaml:"mirror"`
	Counter  Counter  `yaml:"counter"`
}

// Topology is the shape of the relay.
type Topology struct {
	// Mirrors is how many mirrors run (mirror-1 … mirror-M). Default 3.
	Mirrors int `yaml:"mirrors"`
	// OriginExposed also lists the origin as a mirror the viewers may pick (the story's
	// mistake) instead of keeping it a dedicated upstream.
	OriginExposed bool `yaml:"origin_exposed,omitempty"`
	// RTT is the round trip added between viewers and each mirror, by position
	// (rtt[0] for mirror-1); missing entries are 0. Used by `geo`.
	RTT []Duration `yaml:"rtt,omitempty"`
	// OriginRTT is the round trip added between viewers and the origin when it is exposed.
	OriginRTT Duration `yaml:"origin_rtt,omitempty"`
	// UpstreamRTT is the round trip added between each mirror and the origin, by position.
	UpstreamRTT []Duration `yaml:"upstream_rtt,omitempty"`
	// OriginUplink caps the origin's outgoing bandwidth, shared by everything that
	// fetches from it (the mirrors and, when exposed, viewers); 0 is unlimited. It is
	// how `origin-exposed` models the story's upstream whose uplink filled up.
	OriginUplink Bitrate `yaml:"origin_uplink,omitempty"`
}

// Stream is the live stream the origin produces.
type Stream struct {
	SegmentDuration Duration `yaml:"segment_duration"` // default 2s
	Renditions      int      `yaml:"renditions"`       // default 1
	Bitrate         Bitrate  `yaml:"bitrate"`          // of the lowest rendition (origin --bitrate; others ×3, ×6, …); default 500k
	Window          int      `yaml:"window"`           // segments in the live playlist; default 6
}

// Viewers is the crowd.
type Viewers struct {
	// Count is how many viewers arrive over the run. Default 1000; `bench --viewers`
	// overrides it for every tuning.
	Count    int      `yaml:"count"`
	Arrivals Arrivals `yaml:"arrivals"`
	Session  Session  `yaml:"session"`
	// MirrorChoice is how a viewer picks a mirror at join: lowest-rtt (default) or random.
	MirrorChoice MirrorChoice `yaml:"mirror_choice"`
	// Heartbeat is the interval of counter heartbeats; default 5s, 0 disables them.
	Heartbeat Duration `yaml:"heartbeat"`
	// Flags are further `stampede viewers` flags, name → value (without dashes).
	Flags Flags `yaml:"flags,omitempty"`
}

// Arrivals is the arrival schedule: an open model, independent of how servers answer.
type Arrivals struct {
	Kind ArrivalKind `yaml:"kind"` // ramp (default), flash, poisson
	// At is when arrivals begin (all kinds); default 0.
	At Duration `yaml:"at,omitempty"`
	// Over is the time arrivals are spread over (ramp: default 10s; flash: default 1s).
	Over Duration `yaml:"over,omitempty"`
	// Rate is the mean arrival rate (poisson only), e.g. 50/s.
	Rate Rate `yaml:"rate,omitempty"`
}

// Session is how long each viewer stays (churn).
type Session struct {
	Kind   SessionKind `yaml:"kind"`             // whole (default), fixed, exponential, uniform
	Length Duration    `yaml:"length,omitempty"` // fixed
	Mean   Duration    `yaml:"mean,omitempty"`   // exponential
	Min    Duration    `yaml:"min,omitempty"`    // uniform
	Max    Duration    `yaml:"max,omitempty"`    // uniform
}

// Process are the settings every supervised process has.
type Process struct {
	// Nofile sets the process's open-files limit (soft and hard). 0 inherits. A value above
	// the machine's hard limit is lowered to it, and the run notes that.
	Nofile int `yaml:"nofile,omitempty"`
	// GOMAXPROCS caps the Go scheduler's threads (stampede processes); 0 inherits.
	GOMAXPROCS int `yaml:"gomaxprocs,omitempty"`
	// Restart is what happens when the process exits on its own: never (default) or
	// on-crash (restart after a short backoff, as systemd's Restart=on-failure did for the
	// story's counter).
	Restart RestartPolicy `yaml:"restart"`
	// Flags are further command-line flags of the process, name → value (without dashes),
	// passed as --name=value. For nginx mirrors they are nginx directives instead.
	Flags Flags `yaml:"flags,omitempty"`
}

// Flags are extra command-line settings, name → value.
type Flags map[string]string

// Origin is the origin's settings (its stream comes from Stream).
type Origin struct {
	Process `yaml:",inline"`
}

// Mirror is every mirror's settings.
type Mirror struct {
	Process `yaml:",inline"`
	// Kind is stampede (default) or nginx.
	Kind MirrorKind `yaml:"kind"`
	// Coalesce makes concurrent misses for one object share one upstream fetch
	// (nginx: proxy_cache_lock). Default true.
	Coalesce bool `yaml:"coalesce"`
	// StaleIfError serves a stale cached copy when the upstream fails
	// (nginx: proxy_cache_use_stale error timeout). Default true.
	StaleIfError bool `yaml:"stale_if_error"`
	// MaxConns caps concurrent client connections (nginx: worker_connections); 0 means
	// the implementation's default.
	MaxConns int `yaml:"max_conns,omitempty"`
	// PlaylistTTL and SegmentTTL are cache lifetimes (story: 1 s playlists, segments longer);
	// 0 means the implementation's default.
	PlaylistTTL Duration `yaml:"playlist_ttl,omitempty"`
	SegmentTTL  Duration `yaml:"segment_ttl,omitempty"`
	// CacheSize bounds the cache's memory; 0 means the implementation's default.
	CacheSize ByteSize `yaml:"cache_size,omitempty"`
}

// Counter is the viewer counter's settings.
type Counter struct {
	Process `yaml:",inline"`
	// Store is the map implementation: unsafe, mutex, rwmutex, sharded (default), syncmap.
	Store CounterStore `yaml:"store"`
	// Expire drops a viewer silent for this long (story: 10s); 0 means the counter's default.
	Expire Duration `yaml:"expire,omitempty"`
	// Sweep is how often expired viewers are dropped (story: 5s); 0 means the default.
	Sweep Duration `yaml:"sweep,omitempty"`
}

// Tuning is one variant of the scenario.
type Tuning struct {
	// Name is unique in the scenario: lower-case letters, digits, - and _.
	Name        string `yaml:"name"`
	Description string `yaml:"description,omitempty"`
	// Settings are resolved: the scenario's settings with this tuning's overrides on top.
	Settings `yaml:",inline"`
	// Thresholds are checked in addition to the scenario's.
	Thresholds []Threshold `yaml:"thresholds,omitempty"`
	// Expect states the lesson's expected outcome for this tuning as thresholds (e.g.
	// `counter_crashes > 0` for the unsafe store). They are not gates: the scenario's
	// end-to-end tests assert them and `bench` reports whether they held.
	Expect []Threshold `yaml:"expect,omitempty"`
}

// Fault is one scheduled fault.
type Fault struct {
	// At is when the fault happens, from the start of the tuning's run.
	At Duration `yaml:"at,omitempty"`
	// Action is kill, stop, cont, restart or delay.
	Action FaultAction `yaml:"action"`
	// Target is a process (origin, mirror-N, counter) or, for delay, a mirror whose
	// upstream link is slowed.
	Target string `yaml:"target"`
	// Until ends a stop (SIGCONT) or a delay; 0 means the end of the run.
	Until Duration `yaml:"until,omitempty"`
	// Delay is the round trip added (delay only).
	Delay Duration `yaml:"delay,omitempty"`
}

// Capacity tunes `stampede capacity`: run Start viewers, add Step until the SLO breaks
// or Max is reached, then bisect between the last pass and the first failure until
// the gap is at most Resolution.
type Capacity struct {
	Start        int      `yaml:"start"`
	Step         int      `yaml:"step"`
	Max          int      `yaml:"max,omitempty"`
	Resolution   int      `yaml:"resolution"`
	StepDuration Duration `yaml:"step_duration"`
}

// Default returns a scenario holding every default; Parse decodes a file onto it.
func Default() *Scenario {
	return &Scenario{
		Duration: Duration(DefaultDuration),
		Settings: Settings{
			Topology: Topology{Mirrors: DefaultMirrors},
			Stream: Stream{
				SegmentDuration: Duration(DefaultSegmentDuration),
				Renditions:      DefaultRenditions,
				Bitrate:         DefaultBitrate,
				Window:          DefaultWindow,
			},
			Viewers: Viewers{
				Count:        DefaultViewers,
				Arrivals:     Arrivals{Kind: ArrivalRamp},
				Session:      Session{Kind: SessionWhole},
				MirrorChoice: ChooseLowestRTT,
				Heartbeat:    Duration(DefaultHeartbeat),
			},
			Origin:  Origin{Process: Process{Restart: RestartNever}},
			Mirror:  Mirror{Process: Process{Restart: RestartNever}, Kind: MirrorStampede, Coalesce: true, StaleIfError: true},
			Counter: Counter{Process: Process{Restart: RestartNever}, Store: StoreSharded},
		},
		Capacity: Capacity{
			Start:        DefaultCapacityStart,
			Step:         DefaultCapacityStep,
			Max:          DefaultCapacityMax,
			Resolution:   DefaultCapacityResolution,
			StepDuration: Duration(DefaultCapacityStepDuration),
		},
	}
}

// clone returns a deep copy of s, so a tuning's overrides never write into the base.
func (s Settings) clone() Settings {
	c := s
	c.Topology.RTT = append([]Duration(nil), s.Topology.RTT...)
	c.Topology.UpstreamRTT = append([]Duration(nil), s.Topology.UpstreamRTT...)
	c.Viewers.Flags = maps.Clone(s.Viewers.Flags)
	c.Origin.Flags = maps.Clone(s.Origin.Flags)
	c.Mirror.Flags = maps.Clone(s.Mirror.Flags)
	c.Counter.Flags = maps.Clone(s.Counter.Flags)
	return c
}

// applyArrivalDefaults fills the arrival window a kind implies when the file left it 0.
func (s *Settings) applyArrivalDefaults() {
	a := &s.Viewers.Arrivals
	if a.Over == 0 {
		switch a.Kind {
		case ArrivalRamp:
			a.Over = Duration(DefaultRampOver)
		case ArrivalFlash:
			a.Over = Duration(DefaultFlashOver)
		}
	}
}

// Tuning returns the tuning called name.
func (s *Scenario) Tuning(name string) (*Tuning, bool) {
	for i := range s.Tunings {
		if s.Tunings[i].Name == name {
			return &s.Tunings[i], true
		}
	}
	return nil, false
}

// TuningNames lists the tunings in file order.
func (s *Scenario) TuningNames() []string {
	out := make([]string, len(s.Tunings))
	for i, t := range s.Tunings {
		out[i] = t.Name
	}
	return out
}

// Select keeps only the named tunings, in the order given; an unknown name is an error.
func (s *Scenario) Select(names ...string) error {
	if len(names) == 0 {
		return nil
	}
	out := make([]Tuning, 0, len(names))
	for _, n := range names {
		t, ok := s.Tuning(n)
		if !ok {
			return &FieldError{File: s.File, Path: "tunings", Msg: "no tuning " + quoteList([]string{n}) + " (have " + quoteList(s.TuningNames()) + ")"}
		}
		out = append(out, *t)
	}
	s.Tunings = out
	return nil
}

// SetViewers overrides the viewer count of the base settings and of every tuning
// (`bench --viewers N`).
func (s *Scenario) SetViewers(n int) {
	s.Viewers.Count = n
	for i := range s.Tunings {
		s.Tunings[i].Viewers.Count = n
	}
}

// GateThresholds are the thresholds checked for tuning t: the scenario's, then the
// tuning's own.
func (s *Scenario) GateThresholds(t *Tuning) []Threshold {
	return append(append([]Threshold(nil), s.Thresholds...), t.Thresholds...)
}

// CapacitySLO is what `stampede capacity` holds: SLO, or Thresholds when it is empty.
func (s *Scenario) CapacitySLO() []Threshold {
	if len(s.SLO) > 0 {
		return s.SLO
	}
	return s.Thresholds
}

// MirrorNames lists the mirror role names, mirror-1 … mirror-M.
func (t Topology) MirrorNames() []string {
	out := make([]string, t.Mirrors)
	for i := range out {
		out[i] = MirrorName(i + 1)
	}
	return out
}

// MirrorName is the role name of the i-th mirror (1-based).
func MirrorName(i int) string { return "mirror-" + itoa(i) }

// Role names of the processes a topology runs.
const (
	RoleOrigin  = "origin"
	RoleCounter = "counter"
)

// MirrorRTT is the viewer→mirror round trip for the i-th mirror (1-based).
func (t Topology) MirrorRTT(i int) time.Duration { return at(t.RTT, i-1) }

// MirrorUpstreamRTT is the mirror→origin round trip for the i-th mirror (1-based).
func (t Topology) MirrorUpstreamRTT(i int) time.Duration { return at(t.UpstreamRTT, i-1) }

func at(l []Duration, i int) time.Duration {
	if i < 0 || i >= len(l) {
		return 0
	}
	return l[i].D()
}
