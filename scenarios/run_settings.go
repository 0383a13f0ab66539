package scenarios

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stampede-live/stampede/loadgen"
	"github.com/stampede-live/stampede/testenv/local"
	"github.com/stampede-live/stampede/testenv/nginx"
)

// This file maps a resolved tuning onto what runs it: the servers' command lines
// (testenv/local), an nginx mirror's configuration (testenv/nginx) and the viewers'
// loadgen.SwarmConfig.

// MasterPath is the multivariant playlist every viewer loads (the origin's, through its
// mirror).
const MasterPath = "/live/master.m3u8"

// originArgs are `stampede origin` flags for the stream. The epoch is absolute, so an
// origin restarted by a fault keeps its live clock: segment numbers go on from wall time.
func originArgs(st Settings, epoch time.Time) []string {
	sm := st.Stream
	lowest := int64(sm.Bitrate)
	args := []string{
		"--segment-duration", sm.SegmentDuration.D().String(),
		"--window", strconv.Itoa(sm.Window),
		"--renditions", strconv.Itoa(sm.Renditions),
		"--bitrate", strconv.FormatInt(lowest, 10),
		"--epoch", epoch.UTC().Format(time.RFC3339Nano),
	}
	return append(args, flagArgs(st.Origin.Flags)...)
}

// mirrorArgs are `stampede mirror` flags (the topology adds --listen and --upstream).
// A zero setting keeps the mirror's own default.
func mirrorArgs(m Mirror) []string {
	var args []string
	if m.PlaylistTTL > 0 {
		args = append(args, "--playlist-ttl", m.PlaylistTTL.D().String())
	}
	if m.SegmentTTL > 0 {
		args = append(args, "--segment-ttl", m.SegmentTTL.D().String())
	}
	if m.CacheSize > 0 {
		args = append(args, "--cache-size", strconv.FormatInt(int64(m.CacheSize), 10))
	}
	if m.MaxConns > 0 {
		args = append(args, "--max-conns", strconv.Itoa(m.MaxConns))
	}
	if !m.Coalesce {
		args = append(args, "--coalesce=false")
	}
	if !m.StaleIfError {
		args = append(args, "--stale-if-error=0") // 0: never serve stale
	}
	return append(args, flagArgs(m.Flags)...)
}

// counterArgs are `stampede counter` flags.
func counterArgs(c Counter) []string {
	args := []string{"--store", string(c.Store)}
	if c.Expire > 0 {
		args = append(args, "--expire", c.Expire.D().String())
	}
	if c.Sweep > 0 {
		args = append(args, "--sweep", c.Sweep.D().String())
	}
	return append(args, flagArgs(c.Flags)...)
}

// flagArgs renders extra flags as --name=value, sorted so command lines are stable.
func flagArgs(f Flags) []string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, "--"+k+"="+f[k])
	}
	return out
}

// staleConditions are the proxy_cache_use_stale arguments stale_if_error turns on: what
// the stampede mirror's stale-if-error covers (the upstream refusing, timing out, or
// answering 5xx).
var staleConditions = []string{"error", "timeout", "http_500", "http_502", "http_503", "http_504"}

// nginxDirectives are the `mirror.flags` an nginx mirror takes, by flag name (nginx's
// directive with '-' for '_'), each setting one field of nginx.Tuning.
var nginxDirectives = map[string]func(t *nginx.Tuning, v string) error{
	"worker-processes":         intField(func(t *nginx.Tuning, n int) { t.WorkerProcesses = n }),
	"worker-connections":       intField(func(t *nginx.Tuning, n int) { t.WorkerConnections = n }),
	"worker-rlimit-nofile":     intField(func(t *nginx.Tuning, n int) { t.WorkerRlimitNofile = n }),
	"backlog":                  intField(func(t *nginx.Tuning, n int) { t.Backlog = n }),
	"keepalive-requests":       intField(func(t *nginx.Tuning, n int) { t.KeepaliveRequests = n }),
	"upstream-keepalive":       intField(func(t *nginx.Tuning, n int) { t.UpstreamKeepalive = n }),
	"keepalive-timeout":        durField(func(t *nginx.Tuning, d time.Duration) { t.KeepaliveTimeout = d }),
	"proxy-cache-lock-timeout": durField(func(t *nginx.Tuning, d time.Duration) { t.CacheLockTimeout = d }),
	"proxy-cache-lock-age":     durField(func(t *nginx.Tuning, d time.Duration) { t.CacheLockAge = d }),
	"proxy-connect-timeout":    durField(func(t *nginx.Tuning, d time.Duration) { t.ProxyConnectTimeout = d }),
	"proxy-read-timeout":       durField(func(t *nginx.Tuning, d time.Duration) { t.ProxyReadTimeout = d }),
	"worker-cpu-affinity": func(t *nginx.Tuning, v string) error {
		t.WorkerCPUAffinity = v
		return nil
	},
	"access-log": func(t *nginx.Tuning, v string) error {
		switch v {
		case "on":
			t.AccessLog = true
		case "off":
			t.AccessLog = false
		default:
			return fmt.Errorf("want on or off, got %q", v)
		}
		return nil
	},
}

func intField(set func(*nginx.Tuning, int)) func(*nginx.Tuning, string) error {
	return func(t *nginx.Tuning, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		set(t, n)
		return nil
	}
}

func durField(set func(*nginx.Tuning, time.Duration)) func(*nginx.Tuning, string) error {
	return func(t *nginx.Tuning, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		set(t, d)
		return nil
	}
}

// nginxTuning is the nginx mirror configuration of m. nginx caches in whole seconds, so
// a TTL is rounded up to the next second.
func nginxTuning(name string, m Mirror) (nginx.Tuning, error) {
	t := nginx.Tuning{
		Name:              name,
		WorkerConnections: m.MaxConns,
		PlaylistValid:     wholeSeconds(m.PlaylistTTL.D()),
		SegmentValid:      wholeSeconds(m.SegmentTTL.D()),
		CacheLock:         m.Coalesce,
		CacheMaxSize:      int64(m.CacheSize),
	}
	if m.StaleIfError {
		t.UseStale = staleConditions
	}
	keys := make([]string, 0, len(m.Flags))
	for k := range m.Flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set, ok := nginxDirectives[k]
		if !ok {
			return t, fmt.Errorf("flags.%s: not an nginx setting stampede knows (have %s)", k, strings.Join(sortedNames(nginxDirectives), ", "))
		}
		if err := set(&t, m.Flags[k]); err != nil {
			return t, fmt.Errorf("flags.%s: %v", k, err)
		}
	}
	return t, nil
}

func wholeSeconds(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// viewerFlags are the `viewers.flags` a scenario may set, each a `stampede viewers` flag.
var viewerFlags = map[string]func(c *loadgen.SwarmConfig, v string) error{
	"client": func(c *loadgen.SwarmConfig, v string) error {
		c.Player.Client = v
		return nil
	},
	"failover-after": func(c *loadgen.SwarmConfig, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number (-1: never), got %q", v)
		}
		c.Player.FailoverAfter = n
		return nil
	},
	"lag-limit": func(c *loadgen.SwarmConfig, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		c.LagLimit = d
		return nil
	},
	"seed": func(c *loadgen.SwarmConfig, v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		c.Arrivals.Seed = n
		return nil
	},
	"source-ips": func(c *loadgen.SwarmConfig, v string) error {
		c.SourceIPs = v
		return nil
	},
	"source-net": func(c *loadgen.SwarmConfig, v string) error {
		c.SourceNet = v
		return nil
	},
	"ping-timeout": func(c *loadgen.SwarmConfig, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		c.Player.PingTimeout = d
		return nil
	},
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// swarmConfig is the viewers' configuration for tuning st of a run of length run, without
// targets (they are known once the topology runs).
func swarmConfig(st Settings, run time.Duration) (loadgen.SwarmConfig, error) {
	vw := st.Viewers
	c := loadgen.SwarmConfig{
		Duration: run,
		Player: loadgen.PlayerConfig{
			MirrorChoice:      string(vw.MirrorChoice),
			HeartbeatInterval: vw.Heartbeat.D(),
		},
		Arrivals: loadgen.Arrivals{
			Kind:  string(vw.Arrivals.Kind),
			Count: vw.Count,
			Over:  vw.Arrivals.Over.D(),
			Rate:  float64(vw.Arrivals.Rate),
			At:    vw.Arrivals.At.D(),
		},
	}
	switch s := vw.Session; s.Kind {
	case SessionFixed:
		c.Arrivals.Session = loadgen.SessionLength{Dist: loadgen.SessionFixed, Mean: s.Length.D()}
	case SessionExponential:
		c.Arrivals.Session = loadgen.SessionLength{Dist: loadgen.SessionExponential, Mean: s.Mean.D()}
	case SessionUniform:
		c.Arrivals.Session = loadgen.SessionLength{Dist: loadgen.SessionUniform, Min: s.Min.D(), Max: s.Max.D()}
	default:
		c.Arrivals.Session = loadgen.SessionLength{Dist: loadgen.SessionWhole}
	}
	for _, k := range sortedNames(vw.Flags) {
		set, ok := viewerFlags[k]
		if !ok {
			return c, fmt.Errorf("viewers.flags.%s: not a viewers setting a scenario can change (have %s)", k, strings.Join(sortedNames(viewerFlags), ", "))
		}
		if err := set(&c, vw.Flags[k]); err != nil {
			return c, fmt.Errorf("viewers.flags.%s: %v", k, err)
		}
	}
	return c, nil
}

// topologyConfig is the topology of tuning st (addresses and labels are the caller's).
func topologyConfig(st Settings, epoch time.Time) (local.TopologyConfig, error) {
	tp := st.Topology
	c := local.TopologyConfig{
		Origin:        serverSpec(st.Origin.Process, originArgs(st, epoch)),
		OriginExposed: tp.OriginExposed,
		OriginRTT:     tp.OriginRTT.D(),
		OriginUplink:  float64(tp.OriginUplink),
	}
	for i := 1; i <= tp.Mirrors; i++ {
		ms := local.MirrorSpec{
			Kind:        string(st.Mirror.Kind),
			RTT:         tp.MirrorRTT(i),
			UpstreamRTT: tp.MirrorUpstreamRTT(i),
		}
		if st.Mirror.Kind == MirrorNginx {
			ms.ServerSpec = serverSpec(st.Mirror.Process, nil)
			nt, err := nginxTuning(MirrorName(i), st.Mirror)
			if err != nil {
				return c, fmt.Errorf("mirror.%w", err)
			}
			ms.Nginx = nt
		} else {
			ms.ServerSpec = serverSpec(st.Mirror.Process, mirrorArgs(st.Mirror))
		}
		c.Mirrors = append(c.Mirrors, ms)
	}
	// The counter runs even when viewers send no heartbeats: the topology is the same
	// in every tuning, only the load on it changes.
	cs := serverSpec(st.Counter.Process, counterArgs(st.Counter))
	c.Counter = &cs
	return c, nil
}

func serverSpec(p Process, args []string) local.ServerSpec {
	return local.ServerSpec{Args: args, Nofile: uint64(p.Nofile), GOMAXPROCS: p.GOMAXPROCS, Restart: p.LocalRestart()}
}
