// Package local runs a topology as child processes on this machine: each process (the
// origin, mirror-1 … mirror-M, the counter, or any other program such as nginx) gets
// its own loopback address and a free port, its own limits (open files, GOMAXPROCS),
// a log file, a health check, crash detection with the fatal message from its log,
// an optional restart on crash, and faults (kill, SIGSTOP, SIGCONT, restart) on demand
// or on a schedule.
//
// No child outlives the supervisor: Close stops every process group (SIGTERM, then
// SIGKILL after a grace period). If the parent dies without Close (a panic, SIGKILL),
// every child gets SIGKILL from the kernel (a parent-death signal, set from a thread
// that lives as long as the supervisor), and a watchdog process holding a pipe from the
// parent sees it close and kills what is left of every process group (nginx workers,
// an origin's ffmpeg).
package local

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"sync"
	"time"
)

// Defaults.
const (
	// DefaultSubnet is the first three octets of the loopback addresses handed out:
	// processes get 127.0.1.1, 127.0.1.2, … so each has an address of its own (per-IP
	// logic and `ss` output stay readable) while viewers use other 127.x addresses.
	DefaultSubnet = "127.0.1"
	// DefaultGrace is how long Stop waits after SIGTERM before SIGKILL.
	DefaultGrace = 5 * time.Second
	// DefaultHealthTimeout bounds the wait for a process to answer its health check.
	DefaultHealthTimeout = 20 * time.Second
	// DefaultRestartBackoff is the first wait before restarting a crashed process
	// (systemd's RestartSec default is 100 ms); it doubles for each crash in a row, up
	// to DefaultMaxRestartBackoff.
	DefaultRestartBackoff    = 100 * time.Millisecond
	DefaultMaxRestartBackoff = 5 * time.Second
	// stableAfter is how long a process must run for its next crash to count as a new
	// series (the backoff starts over).
	stableAfter = 10 * time.Second
)

// Config configures a Supervisor.
type Config struct {
	// LogDir receives one log file per process, <name>.log (required).
	LogDir string
	// Subnet is the first three octets of the processes' loopback addresses;
	// default DefaultSubnet. Host numbers start at FirstHost (default 1).
	Subnet    string
	FirstHost int
	// Grace is how long Stop waits between SIGTERM and SIGKILL; default DefaultGrace.
	Grace time.Duration
	// HealthTimeout is the default health deadline of a Spec; default DefaultHealthTimeout.
	HealthTimeout time.Duration
	// RestartBackoff and MaxRestartBackoff bound restarts on crash; defaults above.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// OnEvent, when set, is called for every event (start, exit, crash, restart, fault),
	// from the supervisor's goroutines; it must not block.
	OnEvent func(Event)
	// Logger receives the same events; default slog.Default().
	Logger *slog.Logger
}

// Supervisor owns a set of named child processes.
type Supervisor struct {
	cfg      Config
	events   *EventLog
	spawner  *spawner
	watchdog *watchdog

	mu      sync.Mutex // protects procs, addrs, nextIP, closed
	procs   map[string]*Process
	addrs   map[string]string
	nextIP  int
	closed  bool
	pending sync.WaitGroup // restarts scheduled after a crash
}

// EventKind names what happened to a process.
type EventKind string

// Event kinds.
const (
	EventStarted   EventKind = "started"
	EventReady     EventKind = "ready"     // the health check answered
	EventExited    EventKind = "exited"    // an exit the supervisor asked for
	EventCrashed   EventKind = "crashed"   // an exit it did not ask for
	EventRestarted EventKind = "restarted" // restarted after a crash (Restart: OnCrash)
	EventFault     EventKind = "fault"     // a fault was applied (RunFaults with RecordFault)
	EventNote      EventKind = "note"      // something the run should report (a limit lowered)
)

// Event is one entry of the supervisor's log of what happened.
type Event struct {
	Time    time.Time
	Process string
	Kind    EventKind
	Detail  string
}

func (e Event) String() string {
	s := e.Time.Format("15:04:05.000") + " " + e.Process + " " + string(e.Kind)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

var namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// New returns a supervisor; nothing runs until Start.
func New(cfg Config) (*Supervisor, error) {
	if cfg.LogDir == "" {
		return nil, errors.New("local: Config.LogDir is required")
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("local: log dir: %w", err)
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if ip := net.ParseIP(cfg.Subnet + ".1"); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("local: Config.Subnet %q: want three octets of a loopback address, e.g. %s", cfg.Subnet, DefaultSubnet)
	}
	if cfg.FirstHost == 0 {
		cfg.FirstHost = 1
	}
	if cfg.FirstHost < 1 || cfg.FirstHost > 254 {
		return nil, fmt.Errorf("local: Config.FirstHost %d: want 1 to 254", cfg.FirstHost)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = DefaultRestartBackoff
	}
	if cfg.MaxRestartBackoff < cfg.RestartBackoff {
		cfg.MaxRestartBackoff = max(DefaultMaxRestartBackoff, cfg.RestartBackoff)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	wd, err := startWatchdog()
	if err != nil {
		return nil, err
	}
	return &Supervisor{
		cfg:      cfg,
		events:   NewEventLog(log, "process", "process", cfg.OnEvent),
		watchdog: wd,
		spawner:  newSpawner(),
		procs:    map[string]*Process{},
		addrs:    map[string]string{},
		nextIP:   cfg.FirstHost,
	}, nil
}

// Addr reserves (once) and returns the address of the process called name: its own
// loopback IP and a port that was free when reserved. Call it before Start to build
// arguments that name other processes (a mirror's --upstream); a restarted process
// keeps its address.
func (s *Supervisor) Addr(name string) (string, error) {
	if !namePattern.MatchString(name) {
		return "", fmt.Errorf("local: bad process name %q", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.addrs[name]; ok {
		return a, nil
	}
	if s.nextIP > 254 {
		return "", errors.New("local: out of loopback addresses in " + s.cfg.Subnet)
	}
	ip := fmt.Sprintf("%s.%d", s.cfg.Subnet, s.nextIP)
	// Let the kernel pick a free port on that IP. Each process has an IP of its own, so
	// nothing else in this topology binds it before the process does.
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return "", fmt.Errorf("local: reserve an address for %s: %w", name, err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s.nextIP++
	s.addrs[name] = addr
	return addr, nil
}

// Process returns the process called name, if started.
func (s *Supervisor) Process(name string) (*Process, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.procs[name]
	return p, ok
}

// Processes returns every started process, sorted by name.
func (s *Supervisor) Processes() []*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Process, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec.Name < out[j].spec.Name })
	return out
}

// Events returns what has happened so far, oldest first.
func (s *Supervisor) Events() []Event { return s.events.Events() }

func (s *Supervisor) emit(name string, kind EventKind, detail string) {
	s.events.Emit(name, kind, detail)
}

// Close stops every process (SIGTERM to its group, SIGKILL after the grace period)
// in parallel and waits for them. It is safe to call more than once; the supervisor
// cannot be used afterwards.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	procs := make([]*Process, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()

	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.shutdown()
		}()
	}
	wg.Wait()
	s.pending.Wait()
	s.spawner.close()
	s.watchdog.close()
	return errors.Join(errs...)
}

func (s *Supervisor) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// logPath is where the named process's output goes.
func (s *Supervisor) logPath(name string) string {
	return filepath.Join(s.cfg.LogDir, name+".log")
}

// spawner starts child processes from one goroutine locked to its OS thread for the
// supervisor's lifetime. The parent-death signal (Pdeathsig) fires when the *thread*
// that forked the child exits, not the process; Go may retire idle threads, so forking
// from an arbitrary goroutine could kill a child early. The goroutine stays locked
// until Close has stopped every child; then it unlocks and the thread lives on.
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	start func() error
	errc  chan error
}

func newSpawner() *spawner {
	sp := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// Unlock on the way out, so the thread goes back to the runtime instead of being
		// destroyed: LockOSThread wires an existing thread, which may already have forked
		// some other child with a parent-death signal (Prometheus, a run's earlier
		// servers); destroying it would kill that child. Every child of this spawner is
		// stopped before it returns, so none needs the thread to die.
		defer runtime.UnlockOSThread()
		close(ready)
		for {
			select {
			case r := <-sp.reqs:
				r.errc <- r.start()
			case <-sp.done:
				return
			}
		}
	}()
	<-ready
	return sp
}

func (sp *spawner) run(start func() error) error {
	errc := make(chan error, 1)
	select {
	case sp.reqs <- spawnReq{start: start, errc: errc}:
		return <-errc
	case <-sp.done:
		return errClosed
	}
}

func (sp *spawner) close() {
	select {
	case <-sp.done:
	default:
		close(sp.done)
	}
}

var errClosed = errors.New("local: supervisor closed")
