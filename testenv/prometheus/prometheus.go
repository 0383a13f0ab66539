// Package prometheus runs Debian's real Prometheus server for a stampede run: it scrapes
// every process of the run with `run`/`tuning` labels (targets can be added while it runs,
// through a file_sd file Prometheus watches) and answers queries, so dashboards can be
// proven against the real thing and users can point Grafana at a finished run.
package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Defaults.
const (
	DefaultScrapeInterval = time.Second
	DefaultStartTimeout   = 30 * time.Second
	// Binary is looked up on PATH; Debian installs it as /usr/bin/prometheus.
	DefaultBinary = "prometheus"
)

// ErrNotInstalled is returned by Start when no prometheus binary is found.
var ErrNotInstalled = errors.New("prometheus is not installed (Debian package: prometheus; `make deps` installs it)")

// Config says where Prometheus keeps its data and how often it scrapes.
type Config struct {
	Binary         string        // default DefaultBinary on PATH
	Dir            string        // data, config and log directory (required; kept after Stop)
	Listen         string        // host:port; default 127.0.0.1 and a free port
	ScrapeInterval time.Duration // default DefaultScrapeInterval
	StartTimeout   time.Duration // default DefaultStartTimeout
}

// Target is one process to scrape.
type Target struct {
	Job    string            // e.g. origin, mirror, counter, viewers
	Addr   string            // host:port serving /metrics
	Labels map[string]string // e.g. run, tuning, instance name
}

// Server is a running Prometheus.
type Server struct {
	cfg     Config
	addr    string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	mu      sync.Mutex    // protects targets and the file_sd file
	targets []Target
	waitErr error // set before done is closed
}

// Start launches Prometheus and waits until it is ready to serve queries.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("prometheus: dir: required")
	}
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, ErrNotInstalled
	}
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = DefaultScrapeInterval
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Listen == "" {
		cfg.Listen, err = freeAddr()
		if err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "data"), 0o755); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, addr: cfg.Listen, done: make(chan struct{})}
	if err := s.writeTargets(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "prometheus.yml"), []byte(s.config()), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(cfg.Dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin,
		"--config.file="+filepath.Join(cfg.Dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(cfg.Dir, "data"),
		"--web.listen-address="+cfg.Listen,
		"--web.enable-lifecycle",
		"--storage.tsdb.retention.time=30d",
	)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Die with us: a Ctrl-C'd or panicking parent must not leave Prometheus behind
	// (unless the caller detaches it with Keep).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("prometheus: start: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) config() string {
	return fmt.Sprintf(`# written by stampede: scrape every process of a run; targets live in targets.json
global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: stampede
    honor_labels: true
    file_sd_configs:
      - files: [%[2]q]
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [job_name]
        target_label: job
      - regex: job_name
        action: labeldrop
`, promDuration(s.cfg.ScrapeInterval), filepath.Join(s.cfg.Dir, "targets.json"))
}

func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}

func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(s.cfg.StartTimeout)
	for {
		resp, err := http.Get(s.URL() + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("prometheus exited during start-up (%v); see %s", s.waitErr, filepath.Join(s.cfg.Dir, "prometheus.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus not ready after %s; see %s", s.cfg.StartTimeout, filepath.Join(s.cfg.Dir, "prometheus.log"))
		}
	}
}

// URL is Prometheus's base URL (what Grafana's datasource points at).
func (s *Server) URL() string { return "http://" + s.addr }

// AddTargets adds processes to scrape; Prometheus picks them up within about a second.
func (s *Server) AddTargets(ts ...Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets = append(s.targets, ts...)
	return s.writeTargetsLocked()
}

func (s *Server) writeTargets() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeTargetsLocked()
}

// writeTargetsLocked writes the file_sd file atomically (rename), as Prometheus's file
// watcher may read it at any moment. Caller holds s.mu.
func (s *Server) writeTargetsLocked() error {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	groups := make([]group, 0, len(s.targets))
	for _, t := range s.targets {
		labels := map[string]string{"job_name": t.Job}
		for k, v := range t.Labels {
			labels[k] = v
		}
		groups = append(groups, group{Targets: []string{t.Addr}, Labels: labels})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.Dir, "targets.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Stop terminates Prometheus (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	return nil
}

// Done is closed when the Prometheus process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Sample is one series of an instant query.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Series is one series of a range query.
type Series struct {
	Metric map[string]string
	Points [][2]float64 // unix seconds, value
}

// Query runs an instant query at t (zero = now).
func (s *Server) Query(ctx context.Context, expr string, t time.Time) ([]Sample, error) {
	v := url.Values{"query": {expr}}
	if !t.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64))
	}
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := s.api(ctx, "/api/v1/query", v, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var raw []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(raw))
		for _, r := range raw {
			out = append(out, Sample{Metric: r.Metric, Value: parseValue(r.Value[1])})
		}
		return out, nil
	case "scalar":
		var raw [2]any
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, err
		}
		return []Sample{{Metric: map[string]string{}, Value: parseValue(raw[1])}}, nil
	default:
		return nil, fmt.Errorf("query %q: unexpected result type %q", expr, data.ResultType)
	}
}

// QueryRange runs a range query.
func (s *Server) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	v := url.Values{
		"query": {expr},
		"start": {strconv.FormatFloat(float64(start.UnixNano())/1e9, 'f', 3, 64)},
		"end":   {strconv.FormatFloat(float64(end.UnixNano())/1e9, 'f', 3, 64)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', 3, 64)},
	}
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	if err := s.api(ctx, "/api/v1/query_range", v, &data); err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(data.Result))
	for _, r := range data.Result {
		ser := Series{Metric: r.Metric}
		for _, p := range r.Values {
			ts, _ := p[0].(float64)
			ser.Points = append(ser.Points, [2]float64{ts, parseValue(p[1])})
		}
		out = append(out, ser)
	}
	return out, nil
}

// FormatQuery asks Prometheus to parse and pretty-print expr: a syntax check by the
// real parser.
func (s *Server) FormatQuery(ctx context.Context, expr string) (string, error) {
	var out string
	err := s.api(ctx, "/api/v1/format_query", url.Values{"query": {expr}}, &out)
	return out, err
}

// TargetsUp reports how many scrape targets are up, out of how many active.
func (s *Server) TargetsUp(ctx context.Context) (up, total int, err error) {
	var data struct {
		ActiveTargets []struct {
			Health string `json:"health"`
		} `json:"activeTargets"`
	}
	if err := s.api(ctx, "/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
		return 0, 0, err
	}
	for _, t := range data.ActiveTargets {
		if t.Health == "up" {
			up++
		}
	}
	return up, len(data.ActiveTargets), nil
}

// WaitScraped blocks until every address in addrs is an active target that has been
// scraped successfully at least once, or ctx ends. Counters first seen after an event
// hide it from increase(); waiting here lets a caller start its load only once
// Prometheus holds each series' starting value.
func (s *Server) WaitScraped(ctx context.Context, addrs []string) error {
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	for {
		var data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
			} `json:"activeTargets"`
		}
		err := s.api(ctx, "/api/v1/targets", url.Values{"state": {"active"}}, &data)
		if err == nil {
			up := 0
			for _, t := range data.ActiveTargets {
				if u, perr := url.Parse(t.ScrapeURL); perr == nil && want[u.Host] && t.Health == "up" {
					up++
				}
			}
			if up >= len(want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("not every target scraped yet (%d wanted)", len(want))
			}
			return fmt.Errorf("waiting for Prometheus to scrape %d targets: %w (%v)", len(want), ctx.Err(), err)
		case <-s.done:
			return errors.New("prometheus exited")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) api(ctx context.Context, path string, v url.Values, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+path+"?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("prometheus %s: HTTP %d, not JSON: %.200s", path, resp.StatusCode, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("prometheus %s %q: %s: %s", path, v.Get("query"), env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, into)
}

func parseValue(v any) float64 {
	s, _ := v.(string)
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}
