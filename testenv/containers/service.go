package containers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/stampede-live/stampede/testenv/local"
)

// Limits are a container's resource limits: the machine a server will have.
type Limits struct {
	// CPUs is the CPU quota in cores (HostConfig.NanoCPUs; 0.5 is half a core); 0 is
	// unlimited. Go (1.25 and later) caps GOMAXPROCS at the quota rounded up, but
	// never below 2; Role.GOMAXPROCS sets it exactly.
	CPUs float64
	// Memory is the memory limit in bytes, with no swap beyond it; 0 is unlimited. A
	// server that passes it is OOM-killed, and its exit says so.
	Memory int64
	// Nofile is the open-files ulimit, soft and hard (HostConfig.Ulimits), so the server
	// hits EMFILE exactly where the relay's machine would; 0 keeps the daemon's
	// default. A value the daemon cannot grant is lowered to this process's hard limit,
	// and a note says so.
	Nofile uint64
}

// Role is how one server of the topology runs.
type Role struct {
	// Args are flags of the server's subcommand (`stampede origin|mirror|counter`). The
	// topology adds --listen, a mirror's --upstream and the counter's --trusted-proxies
	// after them, so those cannot be overridden.
	Args []string
	// Env is added to the container's environment (KEY=VALUE).
	Env []string
	// Limits are the container's resource limits.
	Limits Limits
	// GOMAXPROCS sets the variable; 0 leaves it to Go (see Limits.CPUs).
	GOMAXPROCS int
	// Restart is what happens when the server exits without being asked to.
	Restart local.RestartPolicy
}

func (r Role) validate(name string) error {
	switch {
	case r.Limits.CPUs < 0:
		return fmt.Errorf("containers: %s: Limits.CPUs %v is negative", name, r.Limits.CPUs)
	case r.Limits.Memory < 0:
		return fmt.Errorf("containers: %s: Limits.Memory %d is negative", name, r.Limits.Memory)
	case r.Limits.Memory > 0 && r.Limits.Memory < minMemory:
		return fmt.Errorf("containers: %s: Limits.Memory %d is below Docker's minimum of %d bytes", name, r.Limits.Memory, minMemory)
	case r.GOMAXPROCS < 0:
		return fmt.Errorf("containers: %s: GOMAXPROCS %d is negative", name, r.GOMAXPROCS)
	}
	for _, e := range r.Env {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("containers: %s: Env %q is not KEY=VALUE", name, e)
		}
	}
	return nil
}

// minMemory is the smallest memory limit Docker accepts (6 MiB).
const minMemory = 6 << 20

// attachment is a network a service joins, with its aliases there.
type attachment struct {
	net     *netHandle
	aliases []string
}

// Service is one server of the topology in its container.
type Service struct {
	topo     *Topology
	name     string
	roleKind string // origin, mirror or counter
	role     Role
	cmd      []string
	nets     []attachment // nets[0] carries the published port
	hostPort int          // on 127.0.0.1; kept across restarts
	nofile   uint64       // the ulimit applied (0: the daemon's default)
	ctr      *testcontainers.DockerContainer
	id       string

	mu          sync.Mutex // protects everything below
	pid         int        // the container's main process on the daemon's host
	running     bool
	paused      bool
	partitioned bool
	requested   bool          // the current run's end was asked for
	stopped     bool          // Stop/Kill: no restart on crash until Start
	oom         bool          // the current run was OOM-killed
	done        chan struct{} // closed when the current run exits
	startedAt   time.Time     // on this process's clock
	daemonStart time.Time     // the run's start on the daemon's clock (events use it); zero until known
	exits       []local.Exit
	crashes     int
	runs        int
	backoff     local.CrashBackoff
	restartWait *time.Timer
}

var _ local.Controller = (*Service)(nil)

// Name is the service's role name: origin, mirror-N, counter.
func (s *Service) Name() string { return s.name }

// ContainerID is the Docker container id.
func (s *Service) ContainerID() string { return s.id }

// Addr is host:port where the service answers on this machine (published on 127.0.0.1).
func (s *Service) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.hostPort)) }

// URL is http://Addr.
func (s *Service) URL() string { return "http://" + s.Addr() }

// MetricsURL is the service's Prometheus endpoint.
func (s *Service) MetricsURL() string { return s.URL() + "/metrics" }

// kind is local.RoleOrigin, RoleMirror or RoleCounter.
func (s *Service) kind() string { return s.roleKind }

// Pid is the process id of the container's server on the Docker daemon's host (0 when
// not running).
func (s *Service) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return 0
	}
	return s.pid
}

// Role is what the service was started with.
func (s *Service) Role() Role { return s.role }

// Nofile is the open-files ulimit applied (0: the daemon's default).
func (s *Service) Nofile() uint64 { return s.nofile }

// Running reports whether the container runs (a paused one runs).
func (s *Service) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// Paused reports whether the container is paused.
func (s *Service) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// Partitioned reports whether the service is cut off from the upstream network.
func (s *Service) Partitioned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partitioned
}

// Exits lists every end of a run so far, oldest first.
func (s *Service) Exits() []local.Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]local.Exit(nil), s.exits...)
}

// Crashes counts exits that were not asked for.
func (s *Service) Crashes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.crashes
}

// Runs counts starts, restarts included.
func (s *Service) Runs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs
}

// Done returns a channel closed when the current run ends (already closed when the
// service is not running).
func (s *Service) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.done
}

// Start starts the container again after Stop or Kill (or a crash left down) and
// waits for its health check. It keeps its address.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return fmt.Errorf("containers: %s is already running", s.name)
	}
	s.stopped = false
	s.backoff.Reset()
	s.mu.Unlock()
	return s.startRun(ctx, local.EventStarted)
}

// startRun starts one run of the container and waits for health.
func (s *Service) startRun(ctx context.Context, kind local.EventKind) error {
	if s.topo.isClosed() {
		return errClosed
	}
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return nil
	}
	s.running, s.paused, s.requested, s.oom = true, false, false, false
	s.startedAt, s.daemonStart = time.Now(), time.Time{}
	s.done = make(chan struct{})
	s.runs++
	done, runs, crashes := s.done, s.runs, s.crashes
	s.mu.Unlock()

	if err := s.ctr.Start(ctx); err != nil {
		s.mu.Lock()
		s.running = false
		s.runs--
		close(done)
		s.mu.Unlock()
		return fmt.Errorf("containers: start %s: %w", s.name, err)
	}
	pid := 0
	if st, err := s.inspectState(ctx); err == nil {
		pid = st.Pid
		started, _ := time.Parse(time.RFC3339Nano, st.StartedAt)
		s.mu.Lock()
		if s.done == done {
			s.pid, s.daemonStart = pid, started
		}
		s.mu.Unlock()
	}
	detail := fmt.Sprintf("container %.12s, pid %d, on %s (run %d)", s.id, pid, s.Addr(), runs)
	if kind == local.EventRestarted {
		detail += fmt.Sprintf(", after %d crashes", crashes)
	}
	s.topo.emit(s.name, kind, detail)
	return s.waitHealthy(ctx, done)
}

// waitHealthy polls /healthz through the published port until it answers 200, the
// run ends, or the deadline passes.
func (s *Service) waitHealthy(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, s.topo.healthTimeout)
	defer cancel()
	url := s.URL() + "/healthz"
	switch err := local.PollHealth(ctx, url, 50*time.Millisecond, done); {
	case err == nil:
		s.topo.emit(s.name, local.EventReady, url)
		return nil
	case errors.Is(err, local.ErrExited):
		why := "exited"
		if ex := s.Exits(); len(ex) > 0 {
			why = ex[len(ex)-1].String()
		}
		return fmt.Errorf("containers: %s exited before it was healthy: %s\n%s", s.name, why, s.logTail(context.WithoutCancel(ctx)))
	default:
		return fmt.Errorf("containers: %s not healthy at %s after %s: %v\n%s", s.name, url, s.topo.healthTimeout, err, s.logTail(context.WithoutCancel(ctx)))
	}
}

// onDie records the end of the current run, from Docker's die event (or from an
// inspect when events did not come); at is on the daemon's clock. A report of an
// earlier run's death (a late event after a quick restart) is ignored.
func (s *Service) onDie(code int, at time.Time, oomKilled bool) {
	s.mu.Lock()
	start := s.daemonStart
	if start.IsZero() {
		start = s.startedAt.Add(-clockSlack)
	}
	if !s.running || at.Before(start) {
		s.mu.Unlock()
		return
	}
	e := local.Exit{Started: s.startedAt, Ended: at, Code: code, Requested: s.requested}
	oom := s.oom || oomKilled
	since := s.startedAt
	s.mu.Unlock()

	// Docker reports death by signal as 128+n, as a shell does.
	if code > 128 && code <= 128+64 {
		e.Signal = strings.TrimPrefix(syscall.Signal(code-128).String(), "signal ")
		e.Code = -1
	}
	if !e.Requested {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e.Fatal = local.LastWords(strings.NewReader(s.logsSince(ctx, since, "2000")))
		cancel()
		if oom {
			e.Fatal = strings.TrimSpace(fmt.Sprintf("OOM-killed at its memory limit of %d bytes. %s", s.role.Limits.Memory, e.Fatal))
		}
	}

	s.mu.Lock()
	if !s.running || !s.startedAt.Equal(e.Started) { // another report of this death won
		s.mu.Unlock()
		return
	}
	s.exits = append(s.exits, e)
	s.running, s.paused = false, false
	close(s.done)
	restart := false
	var backoff time.Duration
	if !e.Requested {
		s.crashes++
		backoff = s.backoff.Crashed(e.Ended.Sub(e.Started))
		if s.role.Restart == local.RestartOnCrash && !s.stopped && !s.topo.isClosed() {
			restart = true
			s.topo.pending.Add(1)
			s.restartWait = time.AfterFunc(backoff, s.restartAfterCrash)
		}
	}
	s.mu.Unlock()

	if e.Requested {
		s.topo.emit(s.name, local.EventExited, e.String())
		return
	}
	detail := e.String()
	if restart {
		detail += fmt.Sprintf(" (restarting in %s)", backoff)
	}
	s.topo.emit(s.name, local.EventCrashed, detail)
}

// clockSlack allows for the daemon's clock and ours to differ while a run's start on
// the daemon's clock is not known yet.
const clockSlack = 100 * time.Millisecond

func (s *Service) markOOM() {
	s.mu.Lock()
	s.oom = true
	s.mu.Unlock()
}

func (s *Service) restartAfterCrash() {
	defer s.topo.pending.Done()
	s.mu.Lock()
	s.restartWait = nil
	if s.running || s.stopped || s.topo.isClosed() {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.topo.healthTimeout+10*time.Second)
	defer cancel()
	if err := s.startRun(ctx, local.EventRestarted); err != nil && !errors.Is(err, errClosed) {
		s.topo.emit(s.name, local.EventNote, "restart failed: "+err.Error())
	}
}

func (s *Service) cancelRestartLocked() {
	if s.restartWait != nil && s.restartWait.Stop() {
		s.topo.pending.Done()
	}
	s.restartWait = nil
}

// Pause freezes every process of the container (the cgroup freezer): it keeps its
// connections and answers nothing, like a hung server. testenv/local's SIGSTOP.
func (s *Service) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return fmt.Errorf("containers: %s is not running", s.name)
	}
	if _, err := s.topo.d.cli.ContainerPause(context.Background(), s.id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("containers: pause %s: %w", s.name, err)
	}
	s.paused = true
	return nil
}

// Resume thaws a paused container.
func (s *Service) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return fmt.Errorf("containers: %s is not running", s.name)
	}
	if !s.paused {
		return nil
	}
	if _, err := s.topo.d.cli.ContainerUnpause(context.Background(), s.id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("containers: resume %s: %w", s.name, err)
	}
	s.paused = false
	return nil
}

// Kill ends the container with SIGKILL and waits for the exit, which is recorded as
// asked for; no restart until Start.
func (s *Service) Kill() error {
	done, paused := s.requestEnd()
	if done == nil {
		return nil
	}
	ctx := context.Background()
	_, err := s.topo.d.cli.ContainerKill(ctx, s.id, client.ContainerKillOptions{Signal: "KILL"})
	if paused {
		// A frozen process dies only once thawed.
		s.topo.d.cli.ContainerUnpause(ctx, s.id, client.ContainerUnpauseOptions{})
	}
	if err != nil && !isNotRunning(err) {
		return fmt.Errorf("containers: kill %s: %w", s.name, err)
	}
	return s.waitExit(done, 30*time.Second)
}

// Stop ends the container gracefully (SIGTERM, SIGKILL after the grace period; a
// paused one is thawed first) and waits for the exit; no restart until Start.
func (s *Service) Stop() error {
	done, paused := s.requestEnd()
	if done == nil {
		return nil
	}
	ctx := context.Background()
	if paused {
		s.topo.d.cli.ContainerUnpause(ctx, s.id, client.ContainerUnpauseOptions{})
	}
	secs := int(s.topo.grace.Round(time.Second) / time.Second)
	if _, err := s.topo.d.cli.ContainerStop(ctx, s.id, client.ContainerStopOptions{Timeout: &secs}); err != nil && !isNotRunning(err) {
		return fmt.Errorf("containers: stop %s: %w", s.name, err)
	}
	return s.waitExit(done, s.topo.grace+30*time.Second)
}

// requestEnd marks the current run's end as asked for, with no restart until Start.
// done is the run's channel (nil when no run was going), paused whether the container
// is frozen.
func (s *Service) requestEnd() (done <-chan struct{}, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	s.cancelRestartLocked()
	if !s.running {
		return nil, false
	}
	s.requested = true
	return s.done, s.paused
}

// Restart stops the service (if it runs) and starts it again on the same address,
// waiting for its health check.
func (s *Service) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start(ctx)
}

// waitExit waits for the run's end as reported by Docker's events, and falls back to
// inspecting the container should an event not come.
func (s *Service) waitExit(done <-chan struct{}, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-deadline.C:
			return fmt.Errorf("containers: %s did not exit within %s", s.name, limit)
		case <-poll.C:
			st, err := s.inspectState(context.Background())
			if err == nil && !st.Running {
				ended, _ := time.Parse(time.RFC3339Nano, st.FinishedAt)
				s.onDie(st.ExitCode, ended, st.OOMKilled)
			}
		}
	}
}

func (s *Service) inspectState(ctx context.Context) (*container.State, error) {
	r, err := s.topo.d.cli.ContainerInspect(ctx, s.id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, err
	}
	if r.Container.State == nil {
		return nil, errors.New("no state")
	}
	return r.Container.State, nil
}

// Partition disconnects the service from the upstream network: a mirror loses the
// origin (which only that network resolves), the origin loses every mirror. Viewers
// still reach it through its published port.
func (s *Service) Partition(ctx context.Context) error { return s.setPartitioned(ctx, true) }

// Heal reconnects a partitioned service to the upstream network, with its alias.
func (s *Service) Heal(ctx context.Context) error { return s.setPartitioned(ctx, false) }

// setPartitioned disconnects the service from the upstream network (cut) or connects
// it back; a service already so is left alone.
func (s *Service) setPartitioned(ctx context.Context, cut bool) error {
	up := s.upstream()
	if up == nil {
		return fmt.Errorf("containers: %s is not on the upstream network", s.name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.partitioned == cut {
		return nil
	}
	if cut {
		if _, err := s.topo.d.cli.NetworkDisconnect(ctx, up.net.id, client.NetworkDisconnectOptions{Container: s.id, Force: true}); err != nil {
			return fmt.Errorf("containers: partition %s from %s: %w", s.name, up.net.role, err)
		}
	} else {
		_, err := s.topo.d.cli.NetworkConnect(ctx, up.net.id, client.NetworkConnectOptions{
			Container: s.id, EndpointConfig: &network.EndpointSettings{Aliases: up.aliases}})
		if err != nil {
			return fmt.Errorf("containers: heal %s's link to %s: %w", s.name, up.net.role, err)
		}
	}
	s.partitioned = cut
	return nil
}

func (s *Service) upstream() *attachment {
	for i := range s.nets {
		if s.nets[i].net.role == netUpstream {
			return &s.nets[i]
		}
	}
	return nil
}

// remove ends the container for good: its log is saved first, then it is removed
// (SIGKILL). Called by Topology.Close.
func (s *Service) remove(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	s.requested = true
	s.cancelRestartLocked()
	paused := s.paused
	s.mu.Unlock()
	if paused {
		s.topo.d.cli.ContainerUnpause(ctx, s.id, client.ContainerUnpauseOptions{})
	}
	var errs []error
	if s.topo.spec.LogDir != "" {
		errs = append(errs, s.saveLog(ctx))
	}
	_, err := s.topo.d.cli.ContainerRemove(ctx, s.id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("containers: remove %s: %w", s.name, err))
	} else {
		s.topo.mu.Lock()
		delete(s.topo.byID, s.id)
		s.topo.mu.Unlock()
	}
	return errors.Join(errs...)
}

// isNotRunning recognises "the container is not running" answers to kill and stop.
func isNotRunning(err error) bool {
	return err != nil && (cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is not running"))
}

// hostConfig builds the container's limits, port and filesystem.
func (s *Service) hostConfig(h *container.HostConfig) {
	h.NetworkMode = container.NetworkMode(s.nets[0].net.name)
	h.PortBindings = network.PortMap{
		network.MustParsePort(strconv.Itoa(ServerPort) + "/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(s.hostPort)}},
	}
	h.NanoCPUs = int64(s.role.Limits.CPUs * 1e9)
	if m := s.role.Limits.Memory; m > 0 {
		h.Memory, h.MemorySwap = m, m
	}
	if s.nofile > 0 {
		h.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: int64(s.nofile), Hard: int64(s.nofile)}}
	}
	h.ReadonlyRootfs = true
	h.Tmpfs = map[string]string{"/tmp": "rw,noexec,nosuid,size=" + DefaultTmpfsSize}
	// Names the topology does not know (an upstream during a partition) must fail
	// here and at once, not be forwarded to the host's resolvers off this machine:
	// Docker's embedded DNS forwards unknown names to these servers, and nothing
	// listens on the container's own loopback.
	h.DNS = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	// json-file keeps the log readable through the API (a crash's last words) and
	// bounded (a crash of 10,000 goroutines prints megabytes).
	h.LogConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "20m", "max-file": "2"}}
}
