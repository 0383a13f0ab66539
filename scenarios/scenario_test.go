package scenarios

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/testenv/local"
)

// designScenarios is DESIGN.md's table of seed lessons plus the baseline.
var designScenarios = []string{
	"baseline", "conn-limit", "fd-limit", "flash-crowd", "geo", "map-race",
	"mirror-failover", "origin-exposed", "origin-outage",
}

func TestShippedScenariosAreValid(t *testing.T) {
	if got := Names(); !slices.Equal(got, designScenarios) {
		t.Fatalf("Names() = %v, want %v", got, designScenarios)
	}
	for _, name := range Names() {
		s, err := Load(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if s.Name != name {
			t.Errorf("%s: name field %q differs from the file name", name, s.Name)
		}
		if s.Description == "" {
			t.Errorf("%s: no description", name)
		}
		src, _ := Source(name)
		head := string(src[:strings.Index(string(src), "\nname:")])
		for _, want := range []string{"# " + name + " —", "Lesson:", "Expected outcome:"} {
			if !strings.Contains(head, want) {
				t.Errorf("%s: header comment lacks %q", name, want)
			}
		}
		if len(s.Thresholds) == 0 {
			t.Errorf("%s: no thresholds", name)
		}
	}
}

// TestShippedScenariosCompareDesignTunings checks each file compares what DESIGN.md's
// table says it compares.
func TestShippedScenariosCompareDesignTunings(t *testing.T) {
	for _, tc := range []struct {
		name string
		// variant renders what distinguishes a tuning; every value in want must appear.
		variant func(t *Tuning) string
		want    []string
	}{
		// counter store unsafe vs mutex vs sharded, with restarts counted
		{"map-race", func(t *Tuning) string { return string(t.Counter.Store) + "/" + string(t.Counter.Restart) },
			[]string{"unsafe/on-crash", "mutex/on-crash", "sharded/on-crash"}},
		// mirror max connections 512 vs 16384, stampede and nginx
		{"conn-limit", func(t *Tuning) string { return string(t.Mirror.Kind) + "/" + itoa(t.Mirror.MaxConns) },
			[]string{"stampede/512", "stampede/16384", "nginx/512", "nginx/16384"}},
		// mirror nofile 1024 vs 65536
		{"fd-limit", func(t *Tuning) string { return string(t.Mirror.Kind) + "/" + itoa(t.Mirror.Nofile) },
			[]string{"stampede/1024", "stampede/65536", "nginx/1024", "nginx/65536"}},
		// origin in the mirror list vs dedicated
		{"origin-exposed", func(t *Tuning) string {
			return map[bool]string{true: "exposed", false: "dedicated"}[t.Topology.OriginExposed]
		},
			[]string{"exposed", "dedicated"}},
		// coalescing on vs off (nginx proxy_cache_lock)
		{"flash-crowd", func(t *Tuning) string {
			return string(t.Mirror.Kind) + "/" + map[bool]string{true: "on", false: "off"}[t.Mirror.Coalesce]
		},
			[]string{"stampede/on", "stampede/off", "nginx/on", "nginx/off"}},
		// mirrors at different round trips, lowest-rtt choice vs random
		{"geo", func(t *Tuning) string {
			return string(t.Viewers.MirrorChoice) + "/" + t.Topology.RTT[0].String() + "," + t.Topology.RTT[2].String()
		},
			[]string{"lowest-rtt/10ms,150ms", "random/10ms,150ms"}},
		// stale-if-error on vs off, with the origin killed
		{"origin-outage", func(t *Tuning) string {
			return map[bool]string{true: "stale", false: "no-stale"}[t.Mirror.StaleIfError]
		},
			[]string{"stale", "no-stale"}},
		// stale-if-error on vs off, with a mirror killed
		{"mirror-failover", func(t *Tuning) string {
			return map[bool]string{true: "stale", false: "no-stale"}[t.Mirror.StaleIfError]
		},
			[]string{"stale", "no-stale"}},
	} {
		s, err := Load(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := range s.Tunings {
			got = append(got, tc.variant(&s.Tunings[i]))
		}
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s: no tuning with %s (have %v)", tc.name, w, got)
			}
		}
		for _, tun := range s.Tunings {
			if len(tun.Expect) == 0 && tc.name != "flash-crowd" && tc.name != "geo" {
				t.Errorf("%s/%s: no expected outcome", tc.name, tun.Name)
			}
		}
	}
	// The outage scenarios really schedule their outage.
	for name, target := range map[string]string{"origin-outage": "origin", "mirror-failover": "mirror-1"} {
		s, _ := Load(name)
		if len(s.Faults) == 0 || s.Faults[0].Action != FaultKill || s.Faults[0].Target != target {
			t.Errorf("%s: first fault %+v, want a kill of %s", name, s.Faults, target)
		}
	}
}

func TestDefaultsApplied(t *testing.T) {
	s, err := Parse("min.yaml", []byte("name: min\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	if s.Topology.Mirrors != DefaultMirrors || s.Duration.D() != DefaultDuration || s.Viewers.Count != DefaultViewers {
		t.Errorf("defaults not applied: %+v", s.Settings)
	}
	if s.Viewers.Arrivals.Over.D() != DefaultRampOver {
		t.Errorf("ramp window = %s, want %s", s.Viewers.Arrivals.Over, DefaultRampOver)
	}
	if len(s.Tunings) != 1 || s.Tunings[0].Name != DefaultTuningName {
		t.Fatalf("tunings = %v, want one %q", s.TuningNames(), DefaultTuningName)
	}
	want.applyArrivalDefaults()
	if !reflect.DeepEqual(s.Tunings[0].Settings, want.Settings) {
		t.Errorf("default tuning settings = %+v, want %+v", s.Tunings[0].Settings, want.Settings)
	}
	if s.Capacity != want.Capacity {
		t.Errorf("capacity = %+v, want %+v", s.Capacity, want.Capacity)
	}
}

func TestTuningOverridesAreResolvedWithoutLeaking(t *testing.T) {
	src := `
tunings:
  - name: a
    mirror: {nofile: 1024, flags: {extra: "1"}}
    viewers: {arrivals: {kind: flash}}
  - name: b
    topology: {rtt: [5ms]}
name: leak
mirror:
  flags: {base: "x"}
  max_conns: 100
topology:
  rtt: [1ms, 2ms]
`
	s, err := Parse("leak.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Tuning("a")
	b, _ := s.Tuning("b")
	// a: its overrides on top of the base, base fields kept, flag maps merged
	if a.Mirror.Nofile != 1024 || a.Mirror.MaxConns != 100 || !reflect.DeepEqual(a.Mirror.Flags, Flags{"base": "x", "extra": "1"}) {
		t.Errorf("a.mirror = %+v", a.Mirror)
	}
	// changing the arrival kind without a window takes that kind's default window
	if a.Viewers.Arrivals.Kind != ArrivalFlash || a.Viewers.Arrivals.Over.D() != DefaultFlashOver {
		t.Errorf("a.arrivals = %+v, want flash over %s", a.Viewers.Arrivals, DefaultFlashOver)
	}
	// b: untouched by a's overrides; a list replaces the base list
	if b.Mirror.Nofile != 0 || !reflect.DeepEqual(b.Mirror.Flags, Flags{"base": "x"}) {
		t.Errorf("b.mirror = %+v, a's overrides leaked", b.Mirror)
	}
	if !reflect.DeepEqual(b.Topology.RTT, []Duration{Duration(5 * time.Millisecond)}) {
		t.Errorf("b.rtt = %v, want [5ms]", b.Topology.RTT)
	}
	// the base is untouched by both
	if s.Mirror.Nofile != 0 || len(s.Mirror.Flags) != 1 || len(s.Topology.RTT) != 2 {
		t.Errorf("base changed: %+v %+v", s.Mirror, s.Topology)
	}
}

func TestParseErrorsNameFieldAndLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want string // the whole first error line
	}{
		// unknown top-level field, with a suggestion
		{"unknown field", "name: x\nviewrs:\n  count: 3\n",
			`bad.yaml:2: viewrs: unknown field "viewrs" (did you mean "viewers"?) (want one of capacity, counter, description, duration, faults, mirror, name, origin, slo, stream, thresholds, topology, tunings, viewers)`},
		// enum value out of its set
		{"bad enum", "name: x\nviewers:\n  arrivals:\n    kind: rmap\n",
			`bad.yaml:4: viewers.arrivals.kind: unknown value "rmap" (want ramp, flash, poisson)`},
		// a word where a number belongs
		{"wrong type scalar", "name: x\nviewers:\n  count: many\n",
			`bad.yaml:3: viewers.count: want a whole number, got "many"`},
		// a mapping where one value belongs
		{"wrong type mapping", "name: x\nduration: {a: 1}\n",
			`bad.yaml:2: duration: want a single value, got a mapping`},
		// a list where a mapping belongs
		{"wrong type list", "name: x\ntopology: [1, 2]\n",
			`bad.yaml:2: topology: want a mapping of fields, got a list`},
		// a bare number as a duration is ambiguous
		{"duration without unit", "name: x\nduration: 60\n",
			`bad.yaml:2: duration: bad duration "60": give a unit, e.g. 60s or 60ms`},
		// not a duration at all
		{"bad duration", "name: x\nstream:\n  segment_duration: two seconds\n",
			`bad.yaml:3: stream.segment_duration: bad duration "two seconds" (want e.g. 500ms, 2s, 1m30s)`},
		// misspelt metric in a threshold
		{"bad threshold metric", "name: x\nthresholds:\n  - segment_p99 < 1s\n  - segmnt_p99 < 1s\n",
			`bad.yaml:4: thresholds[1]: threshold "segmnt_p99 < 1s": unknown metric "segmnt_p99" (did you mean "segment_p99"?) (see ` + "`stampede scenario metrics`)"},
		// a unit that does not fit the metric
		{"bad threshold unit", "name: x\nthresholds: [error_rate < 5ms]\n",
			`bad.yaml:2: thresholds[0]: threshold "error_rate < 5ms": error_rate: unit "ms" does not fit a ratio (use % or a plain fraction)`},
		// a key written twice
		{"duplicate key", "name: x\nduration: 10s\nduration: 20s\n",
			`bad.yaml:3: duration: field given twice`},
		// unknown field inside a tuning
		{"unknown tuning field", "name: x\ntunings:\n  - name: a\n    counter:\n      stor: mutex\n",
			`bad.yaml:5: tunings[0].counter.stor: unknown field "stor" (did you mean "store"?) (want one of expire, flags, gomaxprocs, nofile, restart, store, sweep)`},
		// bad value inside a tuning
		{"bad tuning value", "name: x\ntunings:\n  - name: a\n  - name: b\n    counter: {store: lockfree}\n",
			`bad.yaml:5: tunings[1].counter.store: unknown value "lockfree" (want unsafe, mutex, rwmutex, sharded, syncmap)`},
		// a valid type, an invalid value: Validate names the line
		{"range", "name: x\ntopology:\n  mirrors: 0\n",
			`bad.yaml:3: topology.mirrors: 0 mirrors and the origin not exposed: viewers would have nowhere to go`},
		// a fault aimed at a mirror the topology does not have
		{"fault target", "name: x\nfaults:\n  - at: 5s\n    action: kill\n    target: mirror-9\n",
			`bad.yaml:5: faults[0].target: "mirror-9", but tuning "default" runs 3 mirrors`},
		// delay only targets mirrors
		{"delay target", "name: x\nfaults:\n  - {at: 5s, action: delay, target: counter, delay: 1s}\n",
			`bad.yaml:3: faults[0].target: "counter": delay slows a mirror's upstream link; target a mirror (mirror-N)`},
		// a fault after the end of the run
		{"fault time", "name: x\nduration: 10s\nfaults:\n  - {at: 15s, action: kill, target: origin}\n",
			`bad.yaml:4: faults[0].at: 15s is not before the end of the run (10s)`},
		// a threshold comparing with a tuning that does not exist
		{"bad ref", "name: x\ntunings:\n  - name: a\n    expect: [stall_count < b.stall_count]\n",
			`bad.yaml:4: tunings[0].expect[0]: "stall_count < b.stall_count": no tuning "b" in this scenario`},
		// two tunings with one name
		{"duplicate tuning", "name: x\ntunings:\n  - name: a\n  - name: a\n",
			`bad.yaml:4: tunings[1].name: "a" used by two tunings`},
		// poisson arrivals need a rate
		{"poisson without rate", "name: x\nviewers:\n  arrivals: {kind: poisson}\n",
			`bad.yaml:3: viewers.arrivals.rate: poisson arrivals need a rate (e.g. 50/s)`},
		// flags the runner owns
		{"reserved flag", "name: x\nmirror:\n  flags:\n    listen: \":80\"\n",
			`bad.yaml:4: mirror.flags.listen: set by the runner from the topology; it cannot be overridden`},
		// a flag that duplicates a typed field
		{"typed flag", "name: x\ncounter:\n  flags: {store: mutex}\n",
			`bad.yaml:3: counter.flags.store: use the field counter.store instead`},
		// fixed sessions need a length
		{"session", "name: x\nviewers:\n  session:\n    kind: fixed\n",
			`bad.yaml:3: viewers.session.length: required by fixed sessions (more than 0)`},
		// inherited settings that break only under a tuning's override are reported there
		{"tuning breaks base list", "name: x\ntopology:\n  rtt: [1ms, 2ms, 3ms]\ntunings:\n  - name: one\n    topology: {mirrors: 1}\n",
			`bad.yaml:6: tunings[0].topology.rtt: 3 entries for 1 mirrors`},
		// YAML syntax
		{"syntax", "name: x\nviewers: [\n",
			`bad.yaml:2: not valid YAML: did not find expected node content`},
		{"empty", "", `bad.yaml: empty file (a scenario needs at least a name)`},
		{"two documents", "name: x\n---\nname: y\n", `bad.yaml:2: more than one YAML document; a scenario is one document`},
		{"top is a list", "- name: x\n", `bad.yaml:1: want a mapping of fields (name:, viewers:, …) at the top`},
		{"no name", "duration: 10s\n", `bad.yaml:1: name: required (a short word naming the scenario)`},
		{"bool", "name: x\nmirror: {coalesce: yes}\n", `bad.yaml:2: mirror.coalesce: want true or false, got "yes"`},
		// an empty tunings list is a mistake, not "no tunings"
		{"empty tunings", "name: x\ntunings: []\n", `bad.yaml:2: tunings: empty list; leave the field out for one default tuning`},
		// aliases expanding into a huge document
		{"alias bomb", "name: x\nthresholds: &t [" + strings.Repeat("errors == 0, ", 1000) + "errors == 0]\ntunings:\n" + strings.Repeat("  - {name: a, thresholds: *t}\n", 300),
			`bad.yaml:2: tunings[198].thresholds[201]: more than 200000 values (aliases expanded): not a scenario`},
		// YAML merge keys would hide where a value came from
		{"merge key", "name: x\ntopology:\n  <<: {mirrors: 2}\n", `bad.yaml:3: topology: merge keys (<<) are not supported; write the fields out`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			first := strings.SplitN(err.Error(), "\n", 2)[0]
			if first != tc.want {
				t.Errorf("error:\n got %s\nwant %s\n(all: %v)", first, tc.want, err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not a *FieldError", err)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	src := "name: x\nviewers:\n  count: -1\n  arrivals: {kind: rmap}\nstream:\n  window: 1\n"
	_, err := Parse("bad.yaml", []byte(src))
	var l ErrorList
	if !errors.As(err, &l) {
		t.Fatalf("error %v is not an ErrorList", err)
	}
	// decode errors stop before validation, so the range errors of count and window
	// come in a second pass; the decode error must be there, alone
	if len(l) != 1 || !strings.Contains(l[0].Error(), "rmap") {
		t.Errorf("decode errors = %v", l)
	}
	_, err = Parse("bad.yaml", []byte("name: x\nviewers:\n  count: 0\nstream:\n  window: 1\n"))
	if !errors.As(err, &l) || len(l) != 2 || l[0].Line != 3 || l[1].Line != 5 {
		t.Errorf("validation errors = %v, want count (line 3) and window (line 5)", err)
	}
}

func TestMarshalRoundTrips(t *testing.T) {
	for _, name := range Names() {
		s, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(name+"-resolved.yaml", b)
		if err != nil {
			t.Fatalf("%s: the resolved form does not parse: %v\n%s", name, err, b)
		}
		if !reflect.DeepEqual(again.Tunings, s.Tunings) || !reflect.DeepEqual(again.Faults, s.Faults) ||
			!reflect.DeepEqual(again.Settings, s.Settings) || again.Capacity != s.Capacity {
			t.Errorf("%s: resolved form reads back differently", name)
		}
	}
}

func TestLoadByNameAndPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(p, []byte("name: mine\nduration: 5s\nviewers: {arrivals: {over: 1s}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil || s.Name != "mine" || s.File != p {
		t.Fatalf("Load(%s) = %+v, %v", p, s, err)
	}
	if _, err := Load("nope"); err == nil || !strings.Contains(err.Error(), "baseline") {
		t.Errorf("unknown name: error %v should list the shipped names", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
	s, err = Load("baseline")
	if err != nil || s.File != "scenarios/baseline.yaml" {
		t.Errorf("Load(baseline) file = %q, %v", s.File, err)
	}
}

func TestSelectAndSetViewers(t *testing.T) {
	s, err := Load("map-race")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Select("sharded", "unsafe"); err != nil {
		t.Fatal(err)
	}
	if got := s.TuningNames(); !slices.Equal(got, []string{"sharded", "unsafe"}) {
		t.Errorf("selected %v", got)
	}
	if err := s.Select("nope"); err == nil || !strings.Contains(err.Error(), `"sharded"`) {
		t.Errorf("Select(nope) = %v, want an error listing the tunings", err)
	}
	s.SetViewers(50)
	for _, tun := range s.Tunings {
		if tun.Viewers.Count != 50 {
			t.Errorf("%s: viewers %d after SetViewers(50)", tun.Name, tun.Viewers.Count)
		}
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate after SetViewers: %v", err)
	}
	s.SetViewers(0)
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "viewers.count") {
		t.Errorf("Validate with 0 viewers = %v", err)
	}
}

func TestValueSyntax(t *testing.T) {
	src := `name: v
stream: {bitrate: 1.5M}
topology: {origin_uplink: 200M}
mirror: {cache_size: 256MiB}
viewers:
  arrivals: {kind: poisson, rate: 3000/min}
  session: {kind: uniform, min: 1m, max: 5m}
`
	s, err := Parse("v.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if s.Stream.Bitrate != 1_500_000 || s.Topology.OriginUplink != 200_000_000 || s.Mirror.CacheSize != 256<<20 {
		t.Errorf("bitrate %d uplink %d cache %d", s.Stream.Bitrate, s.Topology.OriginUplink, s.Mirror.CacheSize)
	}
	if s.Viewers.Arrivals.Rate != 50 {
		t.Errorf("rate = %v, want 50/s", s.Viewers.Arrivals.Rate)
	}
	if s.Mirror.CacheSize.String() != "256MiB" || s.Stream.Bitrate.String() != "1500k" {
		t.Errorf("printed back as %s, %s", s.Mirror.CacheSize, s.Stream.Bitrate)
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range Names() {
		b, _ := Source(n)
		f.Add(b)
	}
	f.Add([]byte("name: x\nviewers: {count: 3, arrivals: {kind: flash}}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("name: x\ntunings:\n  - name: a\n    expect: [errors > a.errors]\n"))
	f.Add([]byte("name: x\nfaults: [{at: 1s, action: stop, target: mirror-1, until: 2s}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			if s != nil {
				t.Fatal("a scenario and an error")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "fuzz.yaml") {
				t.Fatalf("error does not name the file: %q", msg)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed scenario does not validate: %v", err)
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse("again.yaml", b); err != nil {
			t.Fatalf("resolved form does not parse: %v\n%s", err, b)
		}
	})
}

func TestLocalFaults(t *testing.T) {
	s, err := Load("origin-outage")
	if err != nil {
		t.Fatal(err)
	}
	lf := s.LocalFaults()
	if len(lf) != len(s.Faults) {
		t.Fatalf("%d local faults for %d", len(lf), len(s.Faults))
	}
	// Every action of the format is one the supervisor knows.
	for _, a := range FaultActions {
		f := local.Fault{Action: local.FaultAction(a), Target: "x", Delay: time.Second}
		err := local.RunFaults(context.Background(), nil, time.Now(), []local.Fault{f}, local.Targets{}, nil)
		if err != nil && strings.Contains(err.Error(), "unknown action") {
			t.Errorf("action %s unknown to testenv/local", a)
		}
	}
	if lf[4].Action != local.FaultDelay || lf[4].Target != "mirror-3" || lf[4].Delay != time.Second || lf[4].Until != 50*time.Second {
		t.Errorf("delay fault %+v", lf[4])
	}
	m, _ := Load("map-race")
	if m.Tunings[0].Counter.LocalRestart() != local.RestartOnCrash || m.Tunings[0].Origin.LocalRestart() != local.RestartNever {
		t.Error("restart policies not carried")
	}
}
