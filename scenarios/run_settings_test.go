package scenarios

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen"
	"github.com/stampede-live/stampede/testenv/local"
	"github.com/stampede-live/stampede/testenv/nginx"
)

func mustParse(t *testing.T, src string) *Scenario {
	t.Helper()
	s, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServerCommandLines(t *testing.T) {
	s := mustParse(t, `name: x
stream: {segment_duration: 500ms, window: 8, renditions: 2, bitrate: 400k}
origin: {flags: {debug: "true"}}
mirror: {coalesce: false, stale_if_error: false, max_conns: 512, playlist_ttl: 1s, cache_size: 64MiB}
counter: {store: unsafe, expire: 10s, nofile: 256, gomaxprocs: 4, restart: on-crash}
`)
	epoch := time.Date(2026, 11, 30, 12, 0, 0, 500, time.UTC)
	tc, err := topologyConfig(s.Tunings[0].Settings, epoch)
	if err != nil {
		t.Fatal(err)
	}
	// Each row: a command line and what it must say.
	for _, row := range []struct {
		what string
		got  []string
		want []string
	}{
		// the stream, with an absolute epoch so a restarted origin keeps its clock
		{"origin", tc.Origin.Args, []string{"--segment-duration", "500ms", "--window", "8", "--renditions", "2",
			"--bitrate", "400000", "--epoch", "2026-11-30T12:00:00.0000005Z", "--debug=true"}},
		// zero settings keep the mirror's defaults; false ones switch features off
		{"mirror", tc.Mirrors[0].Args, []string{"--playlist-ttl", "1s", "--cache-size", "67108864", "--max-conns", "512",
			"--coalesce=false", "--stale-if-error=0"}},
		// the store and the story's timings
		{"counter", tc.Counter.Args, []string{"--store", "unsafe", "--expire", "10s"}},
	} {
		if !slices.Equal(row.got, row.want) {
			t.Errorf("%s args:\n got %q\nwant %q", row.what, row.got, row.want)
		}
	}
	if len(tc.Mirrors) != 3 || tc.Mirrors[2].Kind != "stampede" {
		t.Errorf("mirrors %+v: want 3 stampede mirrors", tc.Mirrors)
	}
	if c := tc.Counter; c.Nofile != 256 || c.GOMAXPROCS != 4 || c.Restart != local.RestartOnCrash {
		t.Errorf("counter limits %+v", c)
	}
}

func TestNginxMirrorSettings(t *testing.T) {
	s := mustParse(t, `name: x
topology: {mirrors: 2, rtt: [10ms], upstream_rtt: [0s, 30ms]}
mirror:
  kind: nginx
  max_conns: 512
  coalesce: true
  playlist_ttl: 1500ms
  nofile: 1024
  flags: {worker-processes: "2", proxy-cache-lock-timeout: 2s, access-log: "on"}
`)
	tc, err := topologyConfig(s.Tunings[0].Settings, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := tc.Mirrors[0]
	want := nginx.Tuning{Name: "mirror-1", WorkerConnections: 512, WorkerProcesses: 2, PlaylistValid: 2 * time.Second,
		SegmentValid: 0, CacheLock: true, CacheLockTimeout: 2 * time.Second, AccessLog: true, UseStale: staleConditions}
	if m.Kind != "nginx" || !nginxEqual(m.Nginx, want) || m.Nofile != 1024 || len(m.Args) != 0 {
		t.Errorf("mirror-1 %+v\nwant nginx %+v", m, want)
	}
	if m.RTT != 10*time.Millisecond || tc.Mirrors[1].UpstreamRTT != 30*time.Millisecond || tc.Mirrors[1].RTT != 0 {
		t.Errorf("round trips: mirror-1 %v, mirror-2 upstream %v", m.RTT, tc.Mirrors[1].UpstreamRTT)
	}
}

func nginxEqual(a, b nginx.Tuning) bool {
	return a.Name == b.Name && a.WorkerConnections == b.WorkerConnections && a.WorkerProcesses == b.WorkerProcesses &&
		a.PlaylistValid == b.PlaylistValid && a.SegmentValid == b.SegmentValid && a.CacheLock == b.CacheLock &&
		a.CacheLockTimeout == b.CacheLockTimeout && a.AccessLog == b.AccessLog && slices.Equal(a.UseStale, b.UseStale)
}

func TestSwarmSettings(t *testing.T) {
	s := mustParse(t, `name: x
duration: 30s
viewers:
  count: 250
  arrivals: {kind: flash, at: 2s, over: 3s}
  session: {kind: uniform, min: 5s, max: 9s}
  mirror_choice: random
  heartbeat: 0s
  flags: {seed: "7", lag-limit: 250ms, failover-after: "-1", client: net/http}
`)
	c, err := swarmConfig(s.Tunings[0].Settings, s.Duration.D())
	if err != nil {
		t.Fatal(err)
	}
	want := loadgen.Arrivals{Kind: "flash", Count: 250, Over: 3 * time.Second, At: 2 * time.Second, Seed: 7,
		Session: loadgen.SessionLength{Dist: loadgen.SessionUniform, Min: 5 * time.Second, Max: 9 * time.Second}}
	if c.Arrivals != want || c.Duration != 30*time.Second {
		t.Errorf("arrivals %+v, duration %v\nwant %+v", c.Arrivals, c.Duration, want)
	}
	if c.Player.MirrorChoice != "random" || c.Player.HeartbeatInterval != 0 || c.Player.FailoverAfter != -1 ||
		c.Player.Client != "net/http" || c.LagLimit != 250*time.Millisecond {
		t.Errorf("player %+v, lag limit %v", c.Player, c.LagLimit)
	}
}

func TestRunnerSettingsErrorsNameTheField(t *testing.T) {
	// Each row: a scenario whose settings the runner cannot apply, and the error.
	for _, tc := range []struct {
		name, src, want string
	}{
		// a viewers flag no runner setting corresponds to
		{"unknown viewers flag", "name: x\nviewers:\n  flags: {rampup: 3s}\n",
			`t.yaml:3: viewers.flags.rampup: not a viewers setting a scenario can change (have client, failover-after, lag-limit, ping-timeout, seed, source-ips, source-net)`},
		// a bad value for a known one
		{"bad viewers flag value", "name: x\nviewers:\n  flags: {seed: abc}\n",
			`t.yaml:3: viewers.flags.seed: want a whole number, got "abc"`},
		// nginx takes directives, not stampede flags
		{"unknown nginx flag", "name: x\nmirror:\n  kind: nginx\n  flags: {upstream-conns: \"8\"}\n",
			`t.yaml:4: mirror.flags.upstream-conns: not an nginx setting stampede knows`},
		// what nginx itself would refuse
		{"nginx rejects", "name: x\nmirror: {kind: nginx, cache_size: 1KiB}\n",
			`t.yaml:2: mirror: nginx tuning "check": CacheMaxSize 1024: want at least 1 MiB`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			if first := strings.SplitN(err.Error(), "\n", 2)[0]; !strings.HasPrefix(first, tc.want) {
				t.Errorf("error:\n got %s\nwant %s", first, tc.want)
			}
		})
	}
}

func TestSetDurationFitsArrivals(t *testing.T) {
	s := mustParse(t, `name: x
duration: 60s
viewers: {arrivals: {kind: ramp, over: 20s}}
tunings:
  - name: a
  - name: b
    viewers: {arrivals: {kind: flash, at: 5s, over: 1s}}
`)
	notes := s.SetDuration(10 * time.Second)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Tuning("a")
	b, _ := s.Tuning("b")
	if a.Viewers.Arrivals.Over.D() != 5*time.Second || b.Viewers.Arrivals.Over.D() != time.Second {
		t.Errorf("over: a %v (want 5s, squeezed), b %v (want 1s, it fits)", a.Viewers.Arrivals.Over, b.Viewers.Arrivals.Over)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "tuning a: arrivals spread over 5s instead of 20s") {
		t.Errorf("notes %q", notes)
	}
	// A fault after the new end is the user's to fix, not silently moved.
	f := mustParse(t, "name: x\nfaults: [{at: 20s, action: kill, target: origin}]\n")
	f.SetDuration(10 * time.Second)
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "faults[0].at") {
		t.Errorf("fault after the end: %v", err)
	}
}
