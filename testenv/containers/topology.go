package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/stampede-live/stampede/testenv/local"
)

// Spec describes the relay to run in containers: the origin, mirror-1 … mirror-M and
// the counter, each with its Role.
type Spec struct {
	// Image is what every container runs (BuildImage; required).
	Image *Image
	// Name is part of the container names (stampede-<name>-<role>-<id>); default "relay".
	Name string
	// LogDir, when set, receives each container's log as <role>.log on Close.
	LogDir string
	// Labels are given to every server as --label name=value (run, tuning), so their
	// /metrics carry them.
	Labels map[string]string
	// Origin, Mirrors (one Role per mirror: mirror-1 is Mirrors[0]) and Counter (nil:
	// no counter).
	Origin  Role
	Mirrors []Role
	Counter *Role
	// OriginExposed also lists the origin among the viewers' URLs (ViewerURLs).
	OriginExposed bool
	// HealthTimeout bounds each start's wait for /healthz; default DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Grace is how long Stop waits between SIGTERM and SIGKILL; default DefaultGrace.
	Grace time.Duration
	// OnEvent, when set, is called for every event (start, ready, exit, crash,
	// restart, fault, note) from the topology's goroutines; it must not block.
	OnEvent func(local.Event)
	// Logger receives the same events; default: discarded (the caller records
	// events through OnEvent, as with testenv/local).
	Logger *slog.Logger
}

// Topology is a running relay in containers.
type Topology struct {
	d             *daemon
	spec          Spec
	id            string
	log           *slog.Logger
	healthTimeout time.Duration
	grace         time.Duration
	edge          *netHandle
	up            *netHandle
	origin        *Service
	mirrors       []*Service
	counter       *Service
	proxy         *viewerProxy
	stopWatch     context.CancelFunc
	watchDone     chan struct{}
	pending       sync.WaitGroup // restarts scheduled after a crash
	dying         sync.WaitGroup // deaths being recorded (handle's goroutines)
	events        *local.EventLog

	mu       sync.Mutex // protects byID, closed
	byID     map[string]*Service
	closed   bool
	closeErr error
}

var topoSeq atomic.Int64

// StartTopology creates the networks and starts the origin, the mirrors and the
// counter, each waited for on /healthz, and the counter's proxy. On error nothing it
// created remains.
func StartTopology(ctx context.Context, spec Spec) (*Topology, error) {
	if spec.Image == nil {
		return nil, errors.New("containers: Spec.Image is required (BuildImage)")
	}
	if len(spec.Mirrors) == 0 {
		return nil, errors.New("containers: Spec.Mirrors: at least one mirror is needed")
	}
	if spec.Name == "" {
		spec.Name = "relay"
	}
	if !namePattern(spec.Name) {
		return nil, fmt.Errorf("containers: Spec.Name %q: want letters, digits, - and _", spec.Name)
	}
	roles := map[string]Role{"origin": spec.Origin}
	if spec.Counter != nil {
		roles["counter"] = *spec.Counter
	}
	for i, m := range spec.Mirrors {
		roles[MirrorName(i+1)] = m
	}
	for name, r := range roles {
		if err := r.validate(name); err != nil {
			return nil, err
		}
	}
	if spec.LogDir != "" {
		if err := os.MkdirAll(spec.LogDir, 0o755); err != nil {
			return nil, fmt.Errorf("containers: Spec.LogDir: %w", err)
		}
	}
	d, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	t := &Topology{
		d:             d,
		spec:          spec,
		id:            fmt.Sprintf("%s-%d", Session(), topoSeq.Add(1)),
		log:           spec.Logger,
		healthTimeout: spec.HealthTimeout,
		grace:         spec.Grace,
		byID:          map[string]*Service{},
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.events = local.NewEventLog(t.log, "container", "service", spec.OnEvent)
	if t.healthTimeout <= 0 {
		t.healthTimeout = DefaultHealthTimeout
	}
	if t.grace <= 0 {
		t.grace = DefaultGrace
	}
	if err := t.start(ctx); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

func (t *Topology) start(ctx context.Context) error {
	var err error
	if t.edge, err = t.createNetwork(ctx, netEdge, false); err != nil {
		return err
	}
	if t.up, err = t.createNetwork(ctx, netUpstream, true); err != nil {
		return err
	}
	if !t.edge.gateway.IsValid() {
		return errors.New("containers: the edge network has no IPv4 gateway for the counter to trust")
	}
	wctx, cancel := context.WithCancel(context.Background())
	t.stopWatch, t.watchDone = cancel, make(chan struct{})
	ready := make(chan struct{})
	go t.watch(wctx, ready)
	<-ready

	// The origin's clock must survive a restart (segment numbers follow wall time from
	// one epoch), so unless the caller chose one, the epoch is fixed here: a minute ago,
	// so viewers joining at once find a full playlist, as they would joining a stream
	// already live.
	originArgs := slices.Clone(t.spec.Origin.Args)
	if !hasFlag(originArgs, "epoch") {
		originArgs = append(originArgs, "--epoch", time.Now().Add(-DefaultEpochAge).Truncate(time.Second).UTC().Format(time.RFC3339))
	}
	originArgs = t.args(local.RoleOrigin, originArgs)
	if t.origin, err = t.newService(ctx, local.RoleOrigin, t.spec.Origin, originArgs,
		attachment{net: t.edge}, attachment{net: t.up, aliases: []string{"origin"}}); err != nil {
		return err
	}

	t.mirrors = make([]*Service, len(t.spec.Mirrors))
	errs := make([]error, len(t.spec.Mirrors))
	var wg sync.WaitGroup
	for i, r := range t.spec.Mirrors {
		name := MirrorName(i + 1)
		args := append(t.args(local.RoleMirror, r.Args), "--upstream", "http://origin:"+strconv.Itoa(ServerPort))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.mirrors[i], errs[i] = t.newService(ctx, name, r, args,
				attachment{net: t.edge, aliases: []string{name}}, attachment{net: t.up, aliases: []string{name}})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	if t.spec.Counter == nil {
		return nil
	}
	counterArgs := append(t.args(local.RoleCounter, t.spec.Counter.Args), "--trusted-proxies", t.edge.gateway.String()+"/32")
	if t.counter, err = t.newService(ctx, local.RoleCounter, *t.spec.Counter, counterArgs,
		attachment{net: t.edge, aliases: []string{local.RoleCounter}}); err != nil {
		return err
	}
	if t.proxy, err = startViewerProxy(t.counter.URL()); err != nil {
		return err
	}
	return nil
}

// DefaultEpochAge is how long before the topology starts the origin's stream began,
// when its Args set no --epoch.
const DefaultEpochAge = time.Minute

// args is a server's command line: the subcommand, the caller's flags, then what the
// topology owns (--listen, --label), last so that they win.
func (t *Topology) args(subcommand string, own []string) []string {
	out := append([]string{subcommand}, own...)
	out = append(out, "--listen", ":"+strconv.Itoa(ServerPort))
	keys := make([]string, 0, len(t.spec.Labels))
	for k := range t.spec.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, "--label", k+"="+t.spec.Labels[k])
	}
	return out
}

// MirrorName is the role name of the i-th mirror (1-based), as in scenarios.
func MirrorName(i int) string { return "mirror-" + strconv.Itoa(i) }

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func namePattern(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// nofileCap is the highest nofile the daemon granted after refusing a higher one (0:
// no refusal seen); later containers start at it directly.
var nofileCap atomic.Uint64

// newService creates and starts one container; on error it removes it.
func (t *Topology) newService(ctx context.Context, name string, r Role, cmd []string, nets ...attachment) (*Service, error) {
	port, err := reservePort()
	if err != nil {
		return nil, fmt.Errorf("containers: %s: reserve a port: %w", name, err)
	}
	s := &Service{topo: t, name: name, role: r, cmd: cmd, nets: nets, hostPort: port, nofile: r.Limits.Nofile,
		backoff: local.CrashBackoff{Base: local.DefaultRestartBackoff, Max: local.DefaultMaxRestartBackoff}}
	if strings.HasPrefix(name, local.RoleMirror) {
		s.roleKind = local.RoleMirror
	} else {
		s.roleKind = name
	}
	if c := nofileCap.Load(); c > 0 && s.nofile > c {
		t.emit(name, local.EventNote, fmt.Sprintf("nofile %d is above what the Docker daemon grants; using %d", s.nofile, c))
		s.nofile = c
	}
	for attempt := 1; ; attempt++ {
		if err := t.create(ctx, s); err != nil {
			return nil, err
		}
		err := s.startRun(ctx, local.EventStarted)
		if err == nil {
			return s, nil
		}
		rerr := s.remove(context.WithoutCancel(ctx))
		if lower, ok := lowerNofile(err, s.nofile); ok {
			t.emit(name, local.EventNote, fmt.Sprintf("nofile %d is above what the Docker daemon grants; using %d, this process's hard limit", s.nofile, lower))
			nofileCap.Store(lower)
			s.nofile = lower
			continue
		}
		if portTaken(err) && attempt < 3 {
			// Another program took the port between its reservation and Docker's bind.
			if s.hostPort, err = reservePort(); err == nil {
				continue
			}
		}
		return nil, errors.Join(err, rerr)
	}
}

// portTaken recognises Docker failing to publish a port something else holds.
func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

// lowerNofile recognises the runtime refusing a nofile ulimit above the daemon's own
// hard limit, and proposes this process's hard limit instead (on a machine where the
// daemon runs beside us they are the same).
func lowerNofile(err error, nofile uint64) (uint64, bool) {
	msg := strings.ToLower(err.Error())
	if nofile == 0 || !strings.Contains(msg, "rlimit") || !strings.Contains(msg, "operation not permitted") {
		return 0, false
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Max >= nofile {
		return 0, false
	}
	return lim.Max, true
}

// create creates s's container (not started), as a new service: a failed attempt's
// removal does not carry over.
func (t *Topology) create(ctx context.Context, s *Service) error {
	s.mu.Lock()
	s.stopped, s.requested = false, false
	s.mu.Unlock()
	env := map[string]string{}
	for _, e := range s.role.Env {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	if s.role.GOMAXPROCS > 0 {
		env["GOMAXPROCS"] = strconv.Itoa(s.role.GOMAXPROCS)
	}
	networks := make([]string, len(s.nets))
	aliases := map[string][]string{}
	for i, a := range s.nets {
		networks[i] = a.net.name
		aliases[a.net.name] = a.aliases
	}
	labels := withLabels(baseLabels(), LabelTopology, t.id, LabelRole, s.name)
	req := testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:              t.spec.Image.Ref,
			Name:               fmt.Sprintf("stampede-%s-%s-%s", t.spec.Name, s.name, randomHex(3)),
			Cmd:                s.cmd,
			Env:                env,
			Labels:             labels,
			ExposedPorts:       []string{strconv.Itoa(ServerPort) + "/tcp"},
			Networks:           networks,
			NetworkAliases:     aliases,
			HostConfigModifier: s.hostConfig,
			ConfigModifier:     func(*container.Config) {},
		},
		Started: false,
		Logger:  debugLogger{},
	}
	c, err := testcontainers.GenericContainer(ctx, req)
	if dc, ok := c.(*testcontainers.DockerContainer); ok && dc != nil {
		s.ctr, s.id = dc, dc.GetContainerID()
		t.mu.Lock()
		t.byID[s.id] = s
		t.mu.Unlock()
	}
	if err != nil {
		if s.ctr != nil {
			s.remove(context.WithoutCancel(ctx))
		}
		return fmt.Errorf("containers: create %s: %w", s.name, err)
	}
	return nil
}

// reservePort finds a port free on 127.0.0.1 now. Publishing it explicitly (rather
// than letting Docker pick) keeps the service's address across a stop and start.
func reservePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// watch follows Docker's events for the topology's containers: deaths (with OOM
// kills) are recorded on their service. It resubscribes after an error, from the
// last event seen, until ctx ends.
func (t *Topology) watch(ctx context.Context, ready chan<- struct{}) {
	defer close(t.watchDone)
	since := time.Now().Add(-time.Second)
	first := true
	for ctx.Err() == nil {
		f := make(client.Filters).Add("type", string(events.ContainerEventType)).
			Add("label", LabelTopology+"="+t.id).
			Add("event", string(events.ActionDie), string(events.ActionOOM))
		res := t.d.cli.Events(ctx, client.EventsListOptions{Since: strconv.FormatInt(since.Unix(), 10), Filters: f})
		if first {
			close(ready)
			first = false
		}
	loop:
		for {
			select {
			case m := <-res.Messages:
				at := time.Unix(0, m.TimeNano)
				if at.After(since) {
					since = at
				}
				t.handle(m, at)
			case err := <-res.Err:
				if ctx.Err() != nil {
					return
				}
				t.log.Warn("containers: Docker's event stream ended; resubscribing", "err", err)
				break loop
			case <-ctx.Done():
				return
			}
		}
		tm := time.NewTimer(time.Second)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return
		}
	}
}

func (t *Topology) handle(m events.Message, at time.Time) {
	t.mu.Lock()
	s := t.byID[m.Actor.ID]
	t.mu.Unlock()
	if s == nil {
		return
	}
	switch m.Action {
	case events.ActionOOM:
		s.markOOM()
	case events.ActionDie:
		code, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
		// Run outside the event loop: fetching the last words is an API call, and a
		// restart must not wait for the next event.
		t.dying.Add(1)
		go func() {
			defer t.dying.Done()
			s.onDie(code, at, false)
		}()
	}
}

func (t *Topology) emit(name string, kind local.EventKind, detail string) {
	t.events.Emit(name, kind, detail)
}

func (t *Topology) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

var errClosed = errors.New("containers: topology closed")

// ID is the topology's LabelTopology value.
func (t *Topology) ID() string { return t.id }

// Origin, Mirrors and Counter are the services (Counter is nil without one).
func (t *Topology) Origin() *Service    { return t.origin }
func (t *Topology) Mirrors() []*Service { return slices.Clone(t.mirrors) }
func (t *Topology) Counter() *Service   { return t.counter }

// OriginURL is the origin's base URL on this machine (for an exposed origin, and
// its /metrics).
func (t *Topology) OriginURL() string { return t.origin.URL() }

// MirrorURLs are the mirrors' base URLs on this machine, mirror-1 first.
func (t *Topology) MirrorURLs() []string {
	out := make([]string, len(t.mirrors))
	for i, m := range t.mirrors {
		out[i] = m.URL()
	}
	return out
}

// CounterURL is where viewers send heartbeats ("" without a counter): the proxy that
// names each viewer to the counter. The counter's own published port (for /metrics)
// is Counter().URL().
func (t *Topology) CounterURL() string {
	if t.proxy == nil {
		return ""
	}
	return t.proxy.URL()
}

// ViewerURLs are the base URLs viewers choose from: every mirror, then the origin when
// it is exposed.
func (t *Topology) ViewerURLs() []string {
	out := t.MirrorURLs()
	if t.spec.OriginExposed {
		out = append(out, t.origin.URL())
	}
	return out
}

// MetricsAddrs are host:port of every server's /metrics, by service name.
func (t *Topology) MetricsAddrs() map[string]string {
	out := map[string]string{}
	for _, s := range t.Services() {
		out[s.name] = s.Addr()
	}
	return out
}

// Service returns the service called name (origin, mirror-N, counter).
func (t *Topology) Service(name string) (*Service, bool) {
	for _, s := range t.Services() {
		if s.name == name {
			return s, true
		}
	}
	return nil, false
}

// Services lists every service, sorted by name.
func (t *Topology) Services() []*Service {
	var out []*Service
	for _, s := range append([]*Service{t.origin, t.counter}, t.mirrors...) {
		if s != nil {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Events returns what has happened so far, oldest first.
func (t *Topology) Events() []local.Event { return t.events.Events() }

// Notes are the events a run's summary should carry (a limit lowered, a restart
// that failed).
func (t *Topology) Notes() []string {
	var out []string
	for _, e := range t.Events() {
		if e.Kind == local.EventNote {
			out = append(out, e.Process+": "+e.Detail)
		}
	}
	return out
}

// Close saves each container's log (with Spec.LogDir), removes the containers, the
// networks and the counter's proxy. It is safe to call more than once. The image is
// the caller's (Image.Remove).
func (t *Topology) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return t.closeErr
	}
	t.closed = true
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var errs []error
	if t.proxy != nil {
		errs = append(errs, t.proxy.close())
	}
	t.mu.Lock()
	svcs := make([]*Service, 0, len(t.byID))
	for _, s := range t.byID {
		svcs = append(svcs, s)
	}
	t.mu.Unlock()
	serrs := make([]error, len(svcs))
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serrs[i] = s.remove(ctx)
		}()
	}
	wg.Wait()
	errs = append(errs, serrs...)
	t.pending.Wait()
	if t.stopWatch != nil {
		t.stopWatch()
		<-t.watchDone
	}
	t.dying.Wait() // no event is emitted after Close returns
	for _, n := range []*netHandle{t.up, t.edge} {
		if n != nil {
			errs = append(errs, n.remove(ctx, t.d))
		}
	}
	// Anything of this topology that escaped the bookkeeping (a create that failed
	// after Docker made the container) goes too.
	errs = append(errs, sweep(ctx, t.d, LabelTopology+"="+t.id, false))
	t.mu.Lock()
	t.closeErr = errors.Join(errs...)
	t.mu.Unlock()
	return t.closeErr
}
