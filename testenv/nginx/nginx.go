package nginx

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned by Start when the nginx binary is missing.
var ErrNotInstalled = errors.New("nginx is not installed: install the Debian package nginx (make test / scripts/deps.sh does)")

// Mirror is a running nginx mirror.
type Mirror struct {
	tuning Tuning
	prefix string
	addr   string
	conf   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the master process has exited
	waited error         // the master's exit status, set before exited closes

	mu     sync.Mutex // protects counts and logOffset
	counts ErrorCounts
	// logOffset is how far error.log has been read into counts.
	logOffset int64

	stopOnce sync.Once
	stopErr  error
}

// startAttempts bounds retries when the free port picked is taken before nginx binds it.
const startAttempts = 5

// startTimeout bounds how long Start waits for nginx to accept connections.
const startTimeout = 30 * time.Second

// Start renders t, writes it into a fresh prefix directory and runs nginx in front of
// upstream (http://host:port) until Stop or ctx ends. It returns once nginx accepts
// connections. The caller must call Stop.
func Start(ctx context.Context, t Tuning, upstream string) (*Mirror, error) {
	t = t.withDefaults()
	if _, err := os.Stat(t.Binary); err != nil {
		if t.Binary == DefaultBinary {
			return nil, ErrNotInstalled
		}
		return nil, fmt.Errorf("nginx: binary %s: %w", t.Binary, err)
	}
	var lastErr error
	for range startAttempts {
		listen := t.Listen
		if listen == "" {
			var err error
			if listen, err = freeLoopbackPort(); err != nil {
				return nil, err
			}
		}
		m, err := start(ctx, t, upstream, listen)
		if err == nil {
			return m, nil
		}
		lastErr = err
		if t.Listen != "" || !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, t Tuning, upstream, listen string) (*Mirror, error) {
	prefix, err := os.MkdirTemp("", "stampede-nginx-")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"tmp", "cache", "logs"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o700); err != nil {
			os.RemoveAll(prefix)
			return nil, err
		}
	}
	conf, err := Render(t, upstream, listen, prefix)
	if err != nil {
		os.RemoveAll(prefix)
		return nil, err
	}
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		os.RemoveAll(prefix)
		return nil, err
	}
	m := &Mirror{tuning: t, prefix: prefix, addr: listen, conf: conf, exited: make(chan struct{})}
	m.cmd = exec.Command(t.Binary, "-p", prefix+"/", "-c", confPath, "-e", filepath.Join(prefix, "error.log"))
	// Stop ends master and workers together (one process group); if this process dies
	// first, the master gets SIGTERM and takes its workers down with it.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	var out bytes.Buffer
	m.cmd.Stdout, m.cmd.Stderr = &out, &out
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(prefix)
		return nil, fmt.Errorf("nginx: start: %w", err)
	}
	go func() {
		m.waited = m.cmd.Wait()
		close(m.exited)
	}()
	stopOnCtx := context.AfterFunc(ctx, func() { m.Stop() })
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			return m, nil
		}
		select {
		case <-m.exited:
			stopOnCtx()
			log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			os.RemoveAll(prefix)
			return nil, fmt.Errorf("nginx exited at start (%v): %s%s", m.waited, bytes.TrimSpace(log), bytes.TrimSpace(out.Bytes()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("nginx did not accept connections on %s within %v", listen, startTimeout)
		}
	}
}

func freeLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// URL is the mirror's base URL (http://127.0.0.1:port).
func (m *Mirror) URL() string { return "http://" + m.addr }

// Addr is the mirror's listen address.
func (m *Mirror) Addr() string { return m.addr }

// Config is the rendered nginx.conf.
func (m *Mirror) Config() string { return m.conf }

// Tuning is the tuning it runs, defaults filled in.
func (m *Mirror) Tuning() Tuning { return m.tuning }

// Prefix is the directory holding its config, logs, cache and pid file.
func (m *Mirror) Prefix() string { return m.prefix }

// Stop ends nginx (SIGTERM: fast shutdown; SIGKILL to the process group after 10 s)
// and removes the prefix. It is safe to call more than once.
func (m *Mirror) Stop() error {
	m.stopOnce.Do(func() {
		pgid := m.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-m.exited
			m.stopErr = errors.New("nginx did not stop within 10 s of SIGTERM; killed")
		}
		// Workers may outlive the master by a moment; the group is ours to end.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		m.readErrorLog() // keep the final counts readable after Stop
		if err := os.RemoveAll(m.prefix); err != nil && m.stopErr == nil {
			m.stopErr = err
		}
	})
	return m.stopErr
}

// Exited is closed when the nginx master process has exited.
func (m *Mirror) Exited() <-chan struct{} { return m.exited }

// ErrorCounts are error.log lines by class.
type ErrorCounts struct {
	// WorkerConnections: "worker_connections are not enough" (the relay's first nginx failure).
	WorkerConnections int
	// TooManyOpenFiles: "(24: Too many open files)", on accept or on connecting upstream.
	TooManyOpenFiles int
	// UpstreamTimedOut: "upstream timed out".
	UpstreamTimedOut int
	// Other: every other line at level error or worse.
	Other int
}

// Error-log classes (what ClassifyErrorLine returns).
const (
	ClassWorkerConnections = "worker_connections"
	ClassTooManyOpenFiles  = "too_many_open_files"
	ClassUpstreamTimedOut  = "upstream_timed_out"
	ClassOther             = "other"
)

// ClassifyErrorLine names the class of one nginx error.log line, or "" for lines below
// level error (notices, warnings) and blank lines.
func ClassifyErrorLine(line string) string {
	switch {
	case strings.Contains(line, "worker_connections are not enough"):
		return ClassWorkerConnections
	case strings.Contains(line, "Too many open files"):
		return ClassTooManyOpenFiles
	case strings.Contains(line, "upstream timed out"):
		return ClassUpstreamTimedOut
	}
	for _, lvl := range []string{"[error]", "[crit]", "[alert]", "[emerg]"} {
		if strings.Contains(line, lvl) {
			return ClassOther
		}
	}
	return ""
}

func (c *ErrorCounts) add(class string) {
	switch class {
	case ClassWorkerConnections:
		c.WorkerConnections++
	case ClassTooManyOpenFiles:
		c.TooManyOpenFiles++
	case ClassUpstreamTimedOut:
		c.UpstreamTimedOut++
	case ClassOther:
		c.Other++
	}
}

// ErrorCounts reads what error.log gained since the last call and returns the totals
// since start.
func (m *Mirror) ErrorCounts() (ErrorCounts, error) {
	err := m.readErrorLog()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts, err
}

func (m *Mirror) readErrorLog() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.Open(filepath.Join(m.prefix, "error.log"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	if _, err := f.Seek(m.logOffset, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if !strings.HasSuffix(line, "\n") {
			return nil // a partial last line is read next time, whole
		}
		m.logOffset += int64(len(line))
		m.counts.add(ClassifyErrorLine(line))
		if err != nil {
			return nil
		}
	}
}

// StubStatus is nginx's stub_status.
type StubStatus struct {
	Active, Accepts, Handled, Requests, Reading, Writing, Waiting int64
}

// StubStatus fetches stub_status. It needs a connection, so it fails when nginx has
// none left — which is itself an answer.
func (m *Mirror) StubStatus(ctx context.Context) (StubStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL()+DefaultStubStatusPath, nil)
	if err != nil {
		return StubStatus{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return StubStatus{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return StubStatus{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return StubStatus{}, fmt.Errorf("nginx stub_status: %s", resp.Status)
	}
	return ParseStubStatus(string(b))
}

// ParseStubStatus reads stub_status output:
//
//	Active connections: 2
//	server accepts handled requests
//	 10 10 25
//	Reading: 0 Writing: 1 Waiting: 1
func ParseStubStatus(s string) (StubStatus, error) {
	var st StubStatus
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) != 4 {
		return st, fmt.Errorf("stub_status: want 4 lines, got %d", len(lines))
	}
	num := func(f string) (int64, error) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("stub_status: %q is not a count", f)
		}
		return n, nil
	}
	var err error
	active, ok := strings.CutPrefix(strings.TrimSpace(lines[0]), "Active connections:")
	if !ok {
		return st, fmt.Errorf("stub_status: first line %q", lines[0])
	}
	if st.Active, err = num(strings.TrimSpace(active)); err != nil {
		return st, err
	}
	if strings.TrimSpace(lines[1]) != "server accepts handled requests" {
		return st, fmt.Errorf("stub_status: second line %q", lines[1])
	}
	f := strings.Fields(lines[2])
	if len(f) != 3 {
		return st, fmt.Errorf("stub_status: third line %q", lines[2])
	}
	for i, p := range []*int64{&st.Accepts, &st.Handled, &st.Requests} {
		if *p, err = num(f[i]); err != nil {
			return st, err
		}
	}
	f = strings.Fields(lines[3])
	if len(f) != 6 || f[0] != "Reading:" || f[2] != "Writing:" || f[4] != "Waiting:" {
		return st, fmt.Errorf("stub_status: fourth line %q", lines[3])
	}
	for i, p := range []*int64{&st.Reading, &st.Writing, &st.Waiting} {
		if *p, err = num(f[2*i+1]); err != nil {
			return st, err
		}
	}
	return st, nil
}

// OpenFDs counts the open descriptors of nginx's master and workers (from /proc).
func (m *Mirror) OpenFDs() (int, error) {
	pids, err := m.PIDs()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, pid := range pids {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue // a worker that just exited
		}
		total += len(ents)
	}
	return total, nil
}

// PIDs lists the master and its workers (for CPU and descriptor accounting).
func (m *Mirror) PIDs() ([]int, error) {
	master := m.cmd.Process.Pid
	out := []int{master}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
	if err != nil {
		return out, err
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}
