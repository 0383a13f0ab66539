package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RestartPolicy is what happens when a process exits without being asked to.
type RestartPolicy int

// Restart policies.
const (
	RestartNever   RestartPolicy = iota // record the crash, leave the process down
	RestartOnCrash                      // record the crash, restart after a backoff
)

// Spec describes a process to run. Nothing in it is specific to stampede, so nginx or
// any other server runs the same way.
type Spec struct {
	// Name is unique in the supervisor: origin, mirror-1, counter, …
	Name string
	// Path is the executable; Args its arguments (use Supervisor.Addr to know the
	// address to pass in a --listen flag before starting).
	Path string
	Args []string
	// Env is added to the parent's environment (KEY=VALUE).
	Env []string
	// Dir is the working directory; default the parent's.
	Dir string
	// Nofile sets the open-files limit, soft and hard, before the program starts (via
	// prlimit(1), so it also holds for programs that are not stampede, and for nginx's
	// workers). 0 inherits. A value above this process's hard limit is lowered to it,
	// and an EventNote says so.
	Nofile uint64
	// GOMAXPROCS sets the variable for Go programs; 0 inherits.
	GOMAXPROCS int
	// Restart is what happens after a crash.
	Restart RestartPolicy
	// Health is the HTTP path polled on the process's address until it answers 200
	// (e.g. /healthz). Empty: Start returns once the process runs.
	Health string
	// HealthTimeout overrides the supervisor's default health deadline.
	HealthTimeout time.Duration
}

// Exit is one end of one run of a process.
type Exit struct {
	Pid     int
	Started time.Time
	Ended   time.Time
	// Code is the exit status, or -1 when a signal ended the process.
	Code int
	// Signal names the signal that ended the process ("killed", "terminated"), if any.
	Signal string
	// Requested is true when the supervisor ended it (Stop, Kill, Restart, a fault);
	// any other exit is a crash.
	Requested bool
	// Fatal is a crashed process's last words from its log: Go's "fatal error: …" or
	// "panic: …", nginx's "[emerg] …", else its last line. Empty for requested exits.
	Fatal string
}

// Crash reports whether the exit was not asked for.
func (e Exit) Crash() bool { return !e.Requested }

func (e Exit) String() string {
	s := "exit status " + strconv.Itoa(e.Code)
	if e.Signal != "" {
		s = "signal: " + e.Signal
	}
	if e.Fatal != "" {
		s += ": " + e.Fatal
	}
	return s
}

// Process is one supervised child (and its process group).
type Process struct {
	sup    *Supervisor
	spec   Spec
	addr   string
	nofile uint64 // the limit actually applied (Spec.Nofile, possibly lowered)

	mu          sync.Mutex // protects everything below
	logf        *os.File
	cmd         *exec.Cmd
	running     bool
	paused      bool
	done        chan struct{} // closed when the current run exits
	requested   bool          // the current run's end was asked for
	stopped     bool          // Stop/Kill: no automatic restart until Start
	startedAt   time.Time
	logOffset   int64 // size of the log when the current run started
	exits       []Exit
	crashes     int
	runs        int
	backoff     CrashBackoff
	restartWait *time.Timer
}

// CrashBackoff is the wait before restarting a crashed process: Base after the first
// crash of a series, doubled for each crash in a row, at most Max. A run that lasted
// stableAfter (10 s) or more ends the series. The owner's mutex protects it.
type CrashBackoff struct {
	Base, Max time.Duration
	inARow    int // crashes in a row
}

// Crashed counts the crash of a run that lasted ran and returns the wait before the
// next start.
func (b *CrashBackoff) Crashed(ran time.Duration) time.Duration {
	if ran >= stableAfter {
		b.inARow = 0
	}
	b.inARow++
	return min(b.Base<<min(b.inARow-1, 20), b.Max)
}

// Reset starts a new series: the next crash waits Base.
func (b *CrashBackoff) Reset() { b.inARow = 0 }

// bindAttempts is how often Start tries a process whose port was taken between its
// reservation and the process binding it.
const bindAttempts = 3

// Start runs a new process from spec and waits for its health check. The process's
// address is reserved by Addr(spec.Name) if it was not already. On error nothing of
// this process keeps running.
//
// A reserved port is free when reserved, but the process binds it a moment later, and
// another socket may take it in between. When the process then dies with "address
// already in use" and its arguments name the address, Start reserves another port,
// puts it in the arguments and tries again.
func (s *Supervisor) Start(ctx context.Context, spec Spec) (*Process, error) {
	for attempt := 1; ; attempt++ {
		p, err := s.start(ctx, spec)
		if err == nil || attempt == bindAttempts || ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
			return p, err
		}
		old := p.Addr()
		args := slices.Clone(spec.Args)
		named := false
		for i, a := range args {
			if strings.Contains(a, old) {
				args[i] = "" // replaced below, once the new address is known
				named = true
			}
		}
		if !named || !s.forget(p) {
			return p, err
		}
		addr, aerr := s.Addr(spec.Name)
		if aerr != nil {
			return p, err
		}
		for i, a := range spec.Args {
			if args[i] == "" {
				args[i] = strings.ReplaceAll(a, old, addr)
			}
		}
		s.emit(spec.Name, EventNote, fmt.Sprintf("port of %s was taken before it could bind; trying %s", old, addr))
		spec.Args = args
	}
}

// forget drops a process that failed to start, and its address, so that Start can run
// it again under the same name. It reports false if the process is running.
func (s *Supervisor) forget(p *Process) bool {
	if p == nil || p.Running() {
		return false
	}
	p.shutdown()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs[p.spec.Name] == p {
		delete(s.procs, p.spec.Name)
		delete(s.addrs, p.spec.Name)
	}
	return true
}

func (s *Supervisor) start(ctx context.Context, spec Spec) (*Process, error) {
	if !namePattern.MatchString(spec.Name) {
		return nil, fmt.Errorf("local: bad process name %q", spec.Name)
	}
	if spec.Path == "" {
		return nil, fmt.Errorf("local: %s: Spec.Path is required", spec.Name)
	}
	if spec.GOMAXPROCS < 0 {
		return nil, fmt.Errorf("local: %s: GOMAXPROCS %d is negative", spec.Name, spec.GOMAXPROCS)
	}
	addr, err := s.Addr(spec.Name)
	if err != nil {
		return nil, err
	}
	p := &Process{sup: s, spec: spec, addr: addr,
		backoff: CrashBackoff{Base: s.cfg.RestartBackoff, Max: s.cfg.MaxRestartBackoff}}
	if spec.Nofile > 0 {
		n, note, err := effectiveNofile(spec.Nofile)
		if err != nil {
			return nil, fmt.Errorf("local: %s: %w", spec.Name, err)
		}
		p.nofile = n
		if note != "" {
			s.emit(spec.Name, EventNote, note)
		}
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, errClosed
	case s.procs[spec.Name] != nil:
		s.mu.Unlock()
		return nil, fmt.Errorf("local: a process called %s already exists", spec.Name)
	}
	s.procs[spec.Name] = p
	s.mu.Unlock()

	f, err := os.OpenFile(s.logPath(spec.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("local: %s: log file: %w", spec.Name, err)
	}
	p.mu.Lock()
	p.logf = f
	p.mu.Unlock()
	if err := p.Start(ctx); err != nil {
		return p, err
	}
	return p, nil
}

// Name is the process's name.
func (p *Process) Name() string { return p.spec.Name }

// Spec is what the process was started from.
func (p *Process) Spec() Spec { return p.spec }

// Addr is the process's host:port.
func (p *Process) Addr() string { return p.addr }

// URL is http://Addr.
func (p *Process) URL() string { return "http://" + p.addr }

// Nofile is the open-files limit applied (0 when inherited).
func (p *Process) Nofile() uint64 { return p.nofile }

// LogPath is the process's log file.
func (p *Process) LogPath() string { return p.sup.logPath(p.spec.Name) }

// Pid is the current run's process id, 0 when not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process is running (a stopped one is running).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// Exits lists every exit so far, oldest first.
func (p *Process) Exits() []Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Exit(nil), p.exits...)
}

// Crashes counts exits the supervisor did not ask for.
func (p *Process) Crashes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashes
}

// Runs counts how many times the process was started (restarts included).
func (p *Process) Runs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// Done returns a channel closed when the current run exits (closed already when the
// process is not running).
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Start runs the process again after a Stop or Kill (or a crash without restart) and
// waits for its health check.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return fmt.Errorf("local: %s is already running", p.spec.Name)
	}
	p.stopped = false
	p.backoff.Reset()
	started, err := p.spawnLocked()
	done := p.done
	p.mu.Unlock()
	if err != nil {
		return err
	}
	p.sup.emit(p.spec.Name, EventStarted, started)
	if err := p.waitHealthy(ctx, done); err != nil {
		p.Kill()
		return err
	}
	return nil
}

// spawnLocked starts one run and returns the detail of its started event, for the
// caller to emit once p.mu is released; p.mu must be held.
func (p *Process) spawnLocked() (string, error) {
	if p.sup.isClosed() {
		return "", errClosed
	}
	path, args := p.spec.Path, p.spec.Args
	if p.nofile > 0 {
		prlimit, err := exec.LookPath("prlimit")
		if err != nil {
			return "", fmt.Errorf("local: %s: setting nofile needs prlimit(1) from util-linux: %w", p.spec.Name, err)
		}
		args = append([]string{fmt.Sprintf("--nofile=%d:%d", p.nofile, p.nofile), "--", path}, args...)
		path = prlimit
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = p.spec.Dir
	cmd.Env = append(os.Environ(), p.spec.Env...)
	if p.spec.GOMAXPROCS > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(p.spec.GOMAXPROCS))
	}
	cmd.Stdout, cmd.Stderr = p.logf, p.logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // its own group: Ctrl-C in a terminal reaches only the parent, Stop reaches its children
		Pdeathsig: syscall.SIGKILL, // dies with the parent (see spawner)
	}
	if st, err := p.logf.Stat(); err == nil {
		p.logOffset = st.Size()
	}
	fmt.Fprintf(p.logf, "--- stampede supervisor: start %d of %s at %s: %s %s\n",
		p.runs+1, p.spec.Name, time.Now().Format(time.RFC3339Nano), p.spec.Path, strings.Join(p.spec.Args, " "))
	if err := p.sup.spawner.run(cmd.Start); err != nil {
		return "", fmt.Errorf("local: start %s: %w", p.spec.Name, err)
	}
	p.sup.watchdog.add(cmd.Process.Pid)
	p.cmd = cmd
	p.running, p.paused, p.requested = true, false, false
	p.done = make(chan struct{})
	p.startedAt = time.Now()
	p.runs++
	go p.wait(cmd, p.done, p.startedAt, p.logOffset)
	return fmt.Sprintf("pid %d on %s", cmd.Process.Pid, p.addr), nil
}

// wait records the end of one run and decides whether to restart.
func (p *Process) wait(cmd *exec.Cmd, done chan struct{}, started time.Time, offset int64) {
	cmd.Wait()
	ended := time.Now()
	// What the leader left behind in its group (a crashed nginx master's workers) goes
	// with it: a crashed service is down, not half up. The group id cannot be reused
	// while any member lives, so this reaches only the process's own descendants.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	p.sup.watchdog.del(cmd.Process.Pid)
	e := Exit{Pid: cmd.Process.Pid, Started: started, Ended: ended, Code: cmd.ProcessState.ExitCode()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal().String()
	}
	p.mu.Lock()
	e.Requested = p.requested
	p.mu.Unlock()
	if !e.Requested {
		e.Fatal = lastWords(p.LogPath(), offset)
	}

	p.mu.Lock()
	p.exits = append(p.exits, e)
	p.running, p.paused = false, false
	close(done)
	restart := false
	var backoff time.Duration
	if !e.Requested {
		p.crashes++
		backoff = p.backoff.Crashed(ended.Sub(started))
		if p.spec.Restart == RestartOnCrash && !p.stopped && !p.sup.isClosed() {
			restart = true
			p.sup.pending.Add(1)
			p.restartWait = time.AfterFunc(backoff, p.restartAfterCrash)
		}
	}
	p.mu.Unlock()

	if e.Requested {
		p.sup.emit(p.spec.Name, EventExited, e.String())
		return
	}
	detail := e.String()
	if restart {
		detail += fmt.Sprintf(" (restarting in %s)", backoff)
	}
	p.sup.emit(p.spec.Name, EventCrashed, detail)
}

func (p *Process) restartAfterCrash() {
	defer p.sup.pending.Done()
	p.mu.Lock()
	p.restartWait = nil
	if p.running || p.stopped || p.sup.isClosed() {
		p.mu.Unlock()
		return
	}
	started, err := p.spawnLocked()
	done := p.done
	crashes := p.crashes
	p.mu.Unlock()
	if err != nil {
		p.sup.emit(p.spec.Name, EventNote, "restart failed: "+err.Error())
		return
	}
	p.sup.emit(p.spec.Name, EventRestarted, fmt.Sprintf("%s, after %d crashes", started, crashes))
	if p.spec.Health != "" {
		// Not waited for by anyone: only record when it is back.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), p.healthTimeout())
			defer cancel()
			p.waitHealthy(ctx, done)
		}()
	}
}

func (p *Process) healthTimeout() time.Duration {
	if p.spec.HealthTimeout > 0 {
		return p.spec.HealthTimeout
	}
	return p.sup.cfg.HealthTimeout
}

// healthClient never reuses connections: a health probe must not hold a file
// descriptor of a process whose limit a test lowered.
var healthClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext},
}

// ErrExited is PollHealth's answer when the run ended before it was healthy.
var ErrExited = errors.New("exited before it was healthy")

// PollHealth GETs url every interval, on a connection of its own each time, until it
// answers 200 (nil), done is closed (ErrExited) or ctx ends (the last probe's failure).
func PollHealth(ctx context.Context, url string, every time.Duration, done <-chan struct{}) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := healthClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-done:
			return ErrExited
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// waitHealthy polls the health path until it answers 200, the run ends, or the
// deadline passes.
func (p *Process) waitHealthy(ctx context.Context, done <-chan struct{}) error {
	if p.spec.Health == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.healthTimeout())
	defer cancel()
	url := p.URL() + p.spec.Health
	switch err := PollHealth(ctx, url, 25*time.Millisecond, done); {
	case err == nil:
		p.sup.emit(p.spec.Name, EventReady, url)
		return nil
	case errors.Is(err, ErrExited):
		exits := p.Exits()
		why := "exited"
		if len(exits) > 0 {
			why = exits[len(exits)-1].String()
		}
		return fmt.Errorf("local: %s exited before it was healthy: %s\n%s", p.spec.Name, why, p.logTail())
	default:
		return fmt.Errorf("local: %s not healthy at %s after %s: %v\n%s", p.spec.Name, url, p.healthTimeout(), err, p.logTail())
	}
}

// logTail is the end of the current run's log, for error messages.
func (p *Process) logTail() string {
	p.mu.Lock()
	off := p.logOffset
	p.mu.Unlock()
	t := tail(p.LogPath(), off, 2048)
	if t == "" {
		return "(" + p.LogPath() + " is empty)"
	}
	return "last lines of " + p.LogPath() + ":\n" + t
}

// signal sends sig to the process's group.
func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signalLocked(sig)
}

func (p *Process) signalLocked(sig syscall.Signal) error {
	if !p.running {
		return fmt.Errorf("local: %s is not running", p.spec.Name)
	}
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("local: signal %s to %s: %w", sig, p.spec.Name, err)
	}
	return nil
}

// Pause stops the process with SIGSTOP: it keeps its connections but answers nothing,
// like a hung server.
func (p *Process) Pause() error { return p.setPaused(syscall.SIGSTOP, true) }

// Resume continues a paused process (SIGCONT).
func (p *Process) Resume() error { return p.setPaused(syscall.SIGCONT, false) }

// setPaused sends sig to the process's group and, once sent, records paused.
func (p *Process) setPaused(sig syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.signalLocked(sig); err != nil {
		return err
	}
	p.paused = paused
	return nil
}

// Paused reports whether the process is paused.
func (p *Process) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Kill ends the process group with SIGKILL and waits for the exit. The exit is
// requested, not a crash, and the process is not restarted until Start.
func (p *Process) Kill() error {
	done, err := p.requestEnd(syscall.SIGKILL)
	if done == nil || err != nil {
		return err
	}
	return p.waitDone(done, 30*time.Second)
}

// Stop ends the process gracefully: SIGTERM (and SIGCONT, in case it was paused) to
// its group, then SIGKILL after the grace period. It waits for the exit. The process
// is not restarted until Start.
func (p *Process) Stop() error {
	done, err := p.requestEnd(syscall.SIGTERM, syscall.SIGCONT)
	if done == nil || err != nil {
		return err
	}
	t := time.NewTimer(p.sup.cfg.Grace)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	p.mu.Lock()
	if p.running {
		p.signalLocked(syscall.SIGKILL)
	}
	p.mu.Unlock()
	return p.waitDone(done, 30*time.Second)
}

// requestEnd marks the current run's end as asked for, with no restart until Start,
// and sends sigs to the process's group, in order, until one fails. done is the run's
// channel, nil when no run was going.
func (p *Process) requestEnd(sigs ...syscall.Signal) (done <-chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.cancelRestartLocked()
	if !p.running {
		return nil, nil
	}
	p.requested = true
	for _, sig := range sigs {
		if err := p.signalLocked(sig); err != nil {
			return p.done, err
		}
	}
	return p.done, nil
}

// Restart stops the process (if it runs) and starts it again on the same address,
// waiting for its health check.
func (p *Process) Restart(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start(ctx)
}

// shutdown is Stop for Close: it also stops a restart scheduled after a crash, and
// closes the log.
func (p *Process) shutdown() error {
	err := p.Stop()
	p.mu.Lock()
	if p.logf != nil {
		p.logf.Close()
		p.logf = nil
	}
	p.mu.Unlock()
	return err
}

func (p *Process) cancelRestartLocked() {
	if p.restartWait != nil && p.restartWait.Stop() {
		p.sup.pending.Done()
	}
	p.restartWait = nil
}

func (p *Process) waitDone(done <-chan struct{}, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("local: %s did not exit %s after SIGKILL", p.spec.Name, limit)
	}
}

// effectiveNofile lowers a requested open-files limit to this process's hard limit,
// which an unprivileged child cannot exceed.
func effectiveNofile(want uint64) (uint64, string, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, "", fmt.Errorf("read the open-files limit: %w", err)
	}
	if want > lim.Max {
		return lim.Max, fmt.Sprintf("nofile %d is above this machine's hard limit %d; using %d", want, lim.Max, lim.Max), nil
	}
	return want, "", nil
}
