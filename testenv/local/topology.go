package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/stampede-live/stampede/testenv/faultproxy"
	"github.com/stampede-live/stampede/testenv/nginx"
)

// Roles and mirror kinds of a topology.
const (
	RoleOrigin  = "origin"
	RoleMirror  = "mirror"
	RoleCounter = "counter"

	MirrorStampede = "stampede" // `stampede mirror`
	MirrorNginx    = "nginx"    // Debian's nginx with proxy_cache (testenv/nginx renders its config)
)

// HealthPath is the health check of every stampede server.
const HealthPath = "/healthz"

// TopologyConfig describes the relay to run: one origin, M mirrors, an optional
// counter, and the links between them and the viewers.
type TopologyConfig struct {
	// Binary is the stampede executable; the servers run as `Binary origin|mirror|counter`.
	Binary string
	// LogDir receives one log per process (required); nginx mirrors keep their config and
	// error.log in LogDir/<name>-nginx/.
	LogDir string
	// Subnet is the supervisor's loopback subnet (default DefaultSubnet).
	Subnet string
	// Labels are given to every stampede server as --label name=value (run, tuning), so
	// their /metrics carry them.
	Labels map[string]string
	Origin ServerSpec
	// Mirrors are mirror-1 … mirror-M, in order.
	Mirrors []MirrorSpec
	// Counter, when set, runs the viewer counter.
	Counter *ServerSpec
	// OriginExposed gives viewers a route to the origin (ViewerOriginURL), through a
	// proxy adding OriginRTT and sharing OriginUplink with the mirrors' fetches.
	OriginExposed bool
	OriginRTT     time.Duration
	// OriginUplink caps the bits per second the origin sends, shared by everything that
	// fetches from it; 0 is unlimited.
	OriginUplink float64
	// NginxBinary runs nginx mirrors; default nginx.DefaultBinary.
	NginxBinary string
	// Grace is how long a process gets between SIGTERM and SIGKILL (DefaultGrace).
	Grace time.Duration
	// OnEvent receives the supervisor's events (see Config.OnEvent).
	OnEvent func(Event)
	// Logger receives the supervisor's event log; default a discarding logger (the run
	// records events itself).
	Logger *slog.Logger
}

// ServerSpec is what a role needs besides its addresses: its own flags and limits.
type ServerSpec struct {
	// Args are the role's own flags (--store sharded, --segment-duration 2s, …); the
	// topology adds --listen, --label and, for mirrors, --upstream.
	Args []string
	// Nofile is the open-files limit (0 inherits; above the hard limit it is lowered).
	Nofile uint64
	// GOMAXPROCS caps a Go server's threads (0 inherits).
	GOMAXPROCS int
	// Restart is what happens when the process dies on its own.
	Restart RestartPolicy
}

// MirrorSpec is one mirror.
type MirrorSpec struct {
	ServerSpec
	// Kind is MirrorStampede (default) or MirrorNginx.
	Kind string
	// Nginx is the nginx mirror's configuration (Kind MirrorNginx); Listen and Binary
	// are set by the topology. Args are not used for nginx.
	Nginx nginx.Tuning
	// RTT is the round trip added between viewers and this mirror (a proxy in front).
	RTT time.Duration
	// UpstreamRTT is the round trip added between this mirror and the origin.
	UpstreamRTT time.Duration
}

// Topology is a running relay.
type Topology struct {
	cfg     TopologyConfig
	sup     *Supervisor
	origin  *Process
	counter *Process
	mirrors []*TopologyMirror
	// originFront carries viewers to an exposed origin (nil when not exposed or direct).
	originFront *faultproxy.Proxy
	proxies     []*faultproxy.Proxy
	closeOnce   sync.Once
	closeErr    error
}

// TopologyMirror is one running mirror and its links.
type TopologyMirror struct {
	Name string
	Kind string
	// Process is the supervised mirror (nginx's master for nginx).
	Process *Process
	// Upstream is the proxy between the mirror and the origin: the link a delay fault
	// slows, and (nginx opens one upstream connection per request) how nginx's upstream
	// requests are counted.
	Upstream *faultproxy.Proxy
	// Front is the proxy between viewers and the mirror (nil when RTT is 0).
	Front *faultproxy.Proxy
	// NginxDir holds an nginx mirror's nginx.conf and error.log ("" for stampede).
	NginxDir string
}

// ViewerURL is the base URL viewers use for the mirror: through its front proxy when it
// has one.
func (m *TopologyMirror) ViewerURL() string {
	if m.Front != nil {
		return "http://" + m.Front.Addr()
	}
	return m.Process.URL()
}

// ErrorLog is an nginx mirror's error.log ("" for stampede mirrors).
func (m *TopologyMirror) ErrorLog() string {
	if m.NginxDir == "" {
		return ""
	}
	return filepath.Join(m.NginxDir, "error.log")
}

// StartTopology starts the origin, then the mirrors (with their links) and the counter
// in parallel, each waited for until healthy. On error, or when ctx ends first, nothing
// it started keeps running.
func StartTopology(ctx context.Context, cfg TopologyConfig) (*Topology, error) {
	if cfg.Binary == "" {
		return nil, errors.New("local: TopologyConfig.Binary is required (the stampede executable)")
	}
	if cfg.LogDir == "" {
		return nil, errors.New("local: TopologyConfig.LogDir is required")
	}
	if cfg.OriginUplink < 0 {
		return nil, fmt.Errorf("local: TopologyConfig.OriginUplink %v is negative", cfg.OriginUplink)
	}
	for i, m := range cfg.Mirrors {
		if m.Kind != "" && m.Kind != MirrorStampede && m.Kind != MirrorNginx {
			return nil, fmt.Errorf("local: TopologyConfig.Mirrors[%d].Kind %q: want %s or %s", i, m.Kind, MirrorStampede, MirrorNginx)
		}
		if m.RTT < 0 || m.UpstreamRTT < 0 {
			return nil, fmt.Errorf("local: TopologyConfig.Mirrors[%d]: negative round trip", i)
		}
	}
	if cfg.NginxBinary == "" {
		cfg.NginxBinary = nginx.DefaultBinary
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sup, err := New(Config{LogDir: cfg.LogDir, Subnet: cfg.Subnet, Grace: cfg.Grace, OnEvent: cfg.OnEvent, Logger: logger})
	if err != nil {
		return nil, err
	}
	t := &Topology{cfg: cfg, sup: sup}
	if err := t.start(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Topology) start(ctx context.Context) error {
	var err error
	t.origin, err = t.sup.Start(ctx, t.stampedeSpec(RoleOrigin, RoleOrigin, t.cfg.Origin, nil))
	if err != nil {
		return err
	}
	var uplink *faultproxy.Link
	if t.cfg.OriginUplink > 0 {
		if uplink, err = faultproxy.NewLink(t.cfg.OriginUplink); err != nil {
			return err
		}
	}
	if t.cfg.OriginExposed && (t.cfg.OriginRTT > 0 || uplink != nil) {
		if t.originFront, err = t.proxy(RoleOrigin+"-front", t.origin.Addr(), t.cfg.OriginRTT, uplink, true); err != nil {
			return err
		}
	}

	// Links first (cheap, and their addresses are the mirrors' upstreams), then every
	// server but the origin at once: each waits for its own health check.
	t.mirrors = make([]*TopologyMirror, len(t.cfg.Mirrors))
	for i, spec := range t.cfg.Mirrors {
		name := MirrorName(i + 1)
		m := &TopologyMirror{Name: name, Kind: spec.Kind}
		if m.Kind == "" {
			m.Kind = MirrorStampede
		}
		if m.Upstream, err = t.proxy(name+"-upstream", t.origin.Addr(), spec.UpstreamRTT, uplink, false); err != nil {
			return err
		}
		t.mirrors[i] = m
	}
	errs := make([]error, len(t.mirrors)+1)
	var wg sync.WaitGroup
	for i := range t.mirrors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = t.startMirror(ctx, t.mirrors[i], t.cfg.Mirrors[i])
		}()
	}
	if t.cfg.Counter != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.counter, errs[len(errs)-1] = t.sup.Start(ctx, t.stampedeSpec(RoleCounter, RoleCounter, *t.cfg.Counter, nil))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, m := range t.mirrors {
		if rtt := t.cfg.Mirrors[i].RTT; rtt > 0 {
			if m.Front, err = t.proxy(m.Name+"-front", m.Process.Addr(), rtt, nil, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// MirrorName is the process name of the i-th mirror (1-based).
func MirrorName(i int) string { return fmt.Sprintf("mirror-%d", i) }

// stampedeSpec is the Spec of `stampede <role>` called name.
func (t *Topology) stampedeSpec(name, role string, s ServerSpec, extra []string) Spec {
	addr, _ := t.sup.Addr(name) // reserved again by Start, which reports its error
	args := []string{role, "--listen", addr}
	for _, k := range sortedKeys(t.cfg.Labels) {
		args = append(args, "--label", k+"="+t.cfg.Labels[k])
	}
	args = append(args, extra...)
	args = append(args, s.Args...)
	return Spec{
		Name: name, Path: t.cfg.Binary, Args: args,
		Nofile: s.Nofile, GOMAXPROCS: s.GOMAXPROCS, Restart: s.Restart, Health: HealthPath,
	}
}

func (t *Topology) startMirror(ctx context.Context, m *TopologyMirror, spec MirrorSpec) error {
	upstream := "http://" + m.Upstream.Addr()
	if m.Kind == MirrorStampede {
		var err error
		m.Process, err = t.sup.Start(ctx, t.stampedeSpec(m.Name, RoleMirror, spec.ServerSpec, []string{"--upstream", upstream}))
		return err
	}
	addr, err := t.sup.Addr(m.Name)
	if err != nil {
		return err
	}
	m.NginxDir = filepath.Join(t.cfg.LogDir, m.Name+"-nginx")
	for _, d := range []string{"tmp", "cache", "logs"} {
		if err := os.MkdirAll(filepath.Join(m.NginxDir, d), 0o755); err != nil {
			return err
		}
	}
	tun := spec.Nginx
	tun.Listen, tun.Binary = addr, t.cfg.NginxBinary
	if tun.Name == "" {
		tun.Name = m.Name
	}
	if _, err := os.Stat(tun.Binary); err != nil {
		if tun.Binary == nginx.DefaultBinary {
			return fmt.Errorf("local: %s: %w", m.Name, nginx.ErrNotInstalled)
		}
		return fmt.Errorf("local: %s: nginx binary: %w", m.Name, err)
	}
	conf, err := nginx.Render(tun, upstream, addr, m.NginxDir)
	if err != nil {
		return fmt.Errorf("local: %s: %w", m.Name, err)
	}
	confPath := filepath.Join(m.NginxDir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	m.Process, err = t.sup.Start(ctx, Spec{
		Name: m.Name, Path: tun.Binary,
		Args:    []string{"-p", m.NginxDir + "/", "-c", confPath, "-e", filepath.Join(m.NginxDir, "error.log")},
		Nofile:  spec.Nofile,
		Restart: spec.Restart,
		Health:  nginx.DefaultStubStatusPath,
	})
	return err
}

// proxy starts a link called name in front of target, on an address of the topology's
// subnet.
func (t *Topology) proxy(name, target string, rtt time.Duration, link *faultproxy.Link, preserveSource bool) (*faultproxy.Proxy, error) {
	addr, err := t.sup.Addr(name)
	if err != nil {
		return nil, err
	}
	// The proxy lives in this process, so it can take a free port on its own address at
	// once: the address the supervisor reserved would have to be released and bound
	// again, and another socket can take the port in between (seen once in CI as
	// "address already in use"). Users read the proxy's address from Addr().
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := faultproxy.New(faultproxy.Config{
		Listen: net.JoinHostPort(host, "0"), Target: target, Delay: rtt, Link: link, PreserveSource: preserveSource,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	t.proxies = append(t.proxies, p)
	return p, nil
}

// Supervisor is the supervisor running the topology's processes (faults, events).
func (t *Topology) Supervisor() *Supervisor { return t.sup }

// Origin is the origin process.
func (t *Topology) Origin() *Process { return t.origin }

// Counter is the counter process (nil when the topology has none).
func (t *Topology) Counter() *Process { return t.counter }

// Mirrors are the mirrors, in order.
func (t *Topology) Mirrors() []*TopologyMirror { return t.mirrors }

// ViewerOriginURL is the base URL viewers use for an exposed origin ("" when the
// origin is not exposed).
func (t *Topology) ViewerOriginURL() string {
	switch {
	case !t.cfg.OriginExposed:
		return ""
	case t.originFront != nil:
		return "http://" + t.originFront.Addr()
	}
	return t.origin.URL()
}

// ViewerURLs are the base URLs viewers choose from: every mirror, then the origin when
// it is exposed.
func (t *Topology) ViewerURLs() []string {
	var out []string
	for _, m := range t.mirrors {
		out = append(out, m.ViewerURL())
	}
	if u := t.ViewerOriginURL(); u != "" {
		out = append(out, u)
	}
	return out
}

// OriginFront is the link viewers reach an exposed origin through (nil when they reach
// it directly, or it is not exposed): its bytes are the origin's uplink to viewers.
func (t *Topology) OriginFront() *faultproxy.Proxy { return t.originFront }

// CounterURL is the counter's base URL ("" without a counter).
func (t *Topology) CounterURL() string {
	if t.counter == nil {
		return ""
	}
	return t.counter.URL()
}

// Links are the delay-fault targets: mirror-N is the link between mirror-N and the
// origin.
func (t *Topology) Links() map[string]Delayer {
	out := map[string]Delayer{}
	for _, m := range t.mirrors {
		out[m.Name] = m.Upstream
	}
	return out
}

// Close stops every process (SIGTERM, SIGKILL after the grace period), then the links,
// and removes nginx caches (their config and error.log stay). Safe to call twice.
func (t *Topology) Close() error {
	t.closeOnce.Do(func() {
		err := t.sup.Close()
		for _, p := range t.proxies {
			p.Close()
		}
		for _, m := range t.mirrors {
			if m != nil && m.NginxDir != "" {
				os.RemoveAll(filepath.Join(m.NginxDir, "cache"))
				os.RemoveAll(filepath.Join(m.NginxDir, "tmp"))
			}
		}
		t.closeErr = err
	})
	return t.closeErr
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
