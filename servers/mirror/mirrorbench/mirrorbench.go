// Package mirrorbench compares the stampede mirror with a real nginx mirror over the same
// origin, with the same cache rules and one core each: hit throughput (req/s and bytes/s
// for playlist and segment hits, measured by wrk at several keep-alive connection
// counts) and origin offload under a flash crowd for a new segment. It drives
// `stampede bench-mirror` and `make bench-mirror`.
package mirrorbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/stampede-live/stampede/servers/origin"
	"github.com/stampede-live/stampede/testenv/nginx"
)

// Defaults for Config.
const (
	DefaultDuration      = 5 * time.Second
	DefaultRounds        = 3
	DefaultThreads       = 1
	DefaultFlashCrowd    = 2000
	DefaultOriginLatency = 50 * time.Millisecond
	DefaultWrk           = "wrk"
)

// DefaultConnections are the keep-alive connection counts measured.
var DefaultConnections = []int{1000, 5000}

// Config configures a run. Only Stampede is required.
type Config struct {
	// Stampede is the stampede binary that runs the mirror under test as a child process
	// (GOMAXPROCS=1), e.g. os.Executable().
	Stampede string
	// Connections are the keep-alive connection counts (default DefaultConnections).
	Connections []int
	// Duration is how long wrk measures each case (default DefaultDuration).
	Duration time.Duration
	// Rounds is how often each case is measured, alternating which mirror goes first;
	// the medians are compared (default DefaultRounds). The machine is shared and noisy.
	Rounds int
	// Threads is wrk's thread count (default DefaultThreads).
	Threads int
	// FlashCrowd is how many clients ask for a new segment at once (default
	// DefaultFlashCrowd; negative skips the flash crowd).
	FlashCrowd int
	// OriginLatency is added to every origin response during the flash crowd, as a
	// distant upstream would (default DefaultOriginLatency; negative: none).
	OriginLatency time.Duration
	// Pin puts the mirror under test on CPU 0 and wrk on CPU 1 (taskset), so each side
	// has one core of its own.
	Pin bool
	// Wrk is the wrk executable (default "wrk").
	Wrk string
	// Logger receives progress (default slog.Default()).
	Logger *slog.Logger
}

// Throughput is one wrk measurement.
type Throughput struct {
	Mirror      string  `json:"mirror"`
	Kind        string  `json:"kind"` // playlist or segment
	Connections int     `json:"connections"`
	Round       int     `json:"round"`
	ReqPerSec   float64 `json:"req_per_sec"`
	BytesPerSec float64 `json:"bytes_per_sec"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"` // socket errors and non-2xx/3xx answers
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	// CPUSeconds is the CPU time the mirror's processes used during the measurement;
	// ReqPerCPUSecond = Requests / CPUSeconds is its efficiency, which a busy shared
	// machine disturbs far less than req/s.
	CPUSeconds      float64 `json:"cpu_seconds"`
	ReqPerCPUSecond float64 `json:"req_per_cpu_second"`
}

// Flash is one flash-crowd run.
type Flash struct {
	Mirror           string         `json:"mirror"`
	Clients          int            `json:"clients"`
	UpstreamRequests int            `json:"upstream_requests"`
	Statuses         map[string]int `json:"statuses"`
	P50Ms            float64        `json:"p50_ms"`
	MaxMs            float64        `json:"max_ms"`
}

// Result is everything a run measured.
type Result struct {
	Throughput []Throughput `json:"throughput"`
	Flash      []Flash      `json:"flash"`
	Notes      []string     `json:"notes"`
}

// Mirror names in results.
const (
	MirrorStampede        = "stampede"
	MirrorStampedeNoMerge = "stampede --coalesce=false"
	MirrorNginx           = "nginx"
	MirrorNginxLockOff    = "nginx proxy_cache_lock off"
	MirrorNginxLockOn     = "nginx proxy_cache_lock on"
)

func (c *Config) defaults() error {
	if c.Stampede == "" {
		return errors.New("mirrorbench: Stampede (the binary) is required")
	}
	if len(c.Connections) == 0 {
		c.Connections = DefaultConnections
	}
	for _, n := range c.Connections {
		if n < 1 || n > 15000 {
			return fmt.Errorf("mirrorbench: Connections %d: want 1..15000 (open-files limit 20000)", n)
		}
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Duration < time.Second {
		return fmt.Errorf("mirrorbench: Duration %v: want at least 1s", c.Duration)
	}
	if c.Rounds == 0 {
		c.Rounds = DefaultRounds
	}
	if c.Rounds < 0 {
		return fmt.Errorf("mirrorbench: Rounds %d: must be positive", c.Rounds)
	}
	if c.Threads == 0 {
		c.Threads = DefaultThreads
	}
	if c.FlashCrowd == 0 {
		c.FlashCrowd = DefaultFlashCrowd
	}
	if c.OriginLatency == 0 {
		c.OriginLatency = DefaultOriginLatency
	}
	if c.Wrk == "" {
		c.Wrk = DefaultWrk
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if _, err := exec.LookPath(c.Wrk); err != nil {
		return fmt.Errorf("mirrorbench: %s not found: install the Debian package wrk (make deps does)", c.Wrk)
	}
	if c.Pin {
		if _, err := exec.LookPath("taskset"); err != nil {
			return errors.New("mirrorbench: Pin needs taskset (Debian package util-linux)")
		}
	}
	return nil
}

// Run performs the comparison. It stops everything it started before returning.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	org, err := startOrigin()
	if err != nil {
		return nil, err
	}
	defer org.close()
	res := &Result{}
	res.Notes = append(res.Notes,
		fmt.Sprintf("origin: synthetic live stream, 2 s segments at 500 kbit/s, in-process at %s", org.url),
		"cache rules for both: playlists 1 s, segments 60 s, upstream Cache-Control ignored",
		"stampede: `stampede mirror` child process with GOMAXPROCS=1, --stale-while-revalidate 2s; nginx: 1 worker, sendfile on, keepalive_requests 1000000, upstream keepalive 32, proxy_cache_lock on, proxy_cache_use_stale updating (both serve the old playlist while one request refreshes it)",
		fmt.Sprintf("wrk -t%d, %v per case, %d rounds alternating which mirror goes first; figures are medians of the rounds", cfg.Threads, cfg.Duration, cfg.Rounds))
	if cfg.Pin {
		res.Notes = append(res.Notes, "pinned: mirror under test on CPU 0, wrk on CPU 1")
	}

	// Hit throughput: one stampede mirror and one nginx, same origin, same rules.
	sm, err := startStampede(ctx, cfg, org.url, true)
	if err != nil {
		return nil, err
	}
	ngx, err := nginx.Start(ctx, nginxTuning(cfg, true), org.url)
	if err != nil {
		sm.stop()
		return nil, err
	}
	playlist, _, err := org.currentPaths()
	if err != nil {
		sm.stop()
		ngx.Stop()
		return nil, err
	}
	mirrors := []struct {
		name, url string
		pids      func() ([]int, error)
	}{
		{MirrorStampede, sm.url, func() ([]int, error) { return []int{sm.cmd.Process.Pid}, nil }},
		{MirrorNginx, ngx.URL(), ngx.PIDs},
	}
	for _, conns := range cfg.Connections {
		for _, kind := range []string{"playlist", "segment"} {
			for i := range cfg.Rounds * len(mirrors) {
				// Alternate who goes first each round, so neither always gets the
				// cooler machine.
				round := i / len(mirrors)
				m := mirrors[(i+round)%len(mirrors)]
				if ctx.Err() != nil {
					break
				}
				// The newest segment each time: the origin drops old ones after its window.
				path := playlist
				if kind == "segment" {
					if _, path, err = org.currentPaths(); err != nil {
						sm.stop()
						ngx.Stop()
						return res, err
					}
				}
				if err := warm(m.url + path); err != nil {
					log.Warn("warm-up failed", "mirror", m.name, "err", err)
				}
				log.Info("measuring", "mirror", m.name, "kind", kind, "connections", conns, "duration", cfg.Duration)
				pids, _ := m.pids()
				cpu0 := cpuSeconds(pids)
				tp, err := runWrk(ctx, cfg, m.url+path, conns)
				if tp.CPUSeconds = cpuSeconds(pids) - cpu0; tp.CPUSeconds > 0 {
					tp.ReqPerCPUSecond = float64(tp.Requests) / tp.CPUSeconds
				}
				if err != nil {
					sm.stop()
					ngx.Stop()
					return res, fmt.Errorf("wrk against %s: %w", m.name, err)
				}
				tp.Mirror, tp.Kind, tp.Connections, tp.Round = m.name, kind, conns, round+1
				if tp.Errors*100 > tp.Requests {
					res.Notes = append(res.Notes, fmt.Sprintf("INVALID: %s %s %d conns round %d: %d of %d requests failed",
						m.name, kind, conns, round+1, tp.Errors, tp.Requests))
				}
				res.Throughput = append(res.Throughput, tp)
			}
		}
	}
	if st, err := ngx.ErrorCounts(); err == nil && st != (nginx.ErrorCounts{}) {
		res.Notes = append(res.Notes, fmt.Sprintf("nginx error log during throughput: %+v", st))
	}
	sm.stop()
	ngx.Stop()
	if cfg.FlashCrowd < 0 || ctx.Err() != nil {
		return res, ctx.Err()
	}

	// Flash crowd: a new segment, every client at once, a distant origin.
	org.setLatency(max(cfg.OriginLatency, 0))
	res.Notes = append(res.Notes, fmt.Sprintf("flash crowd: %d keep-alive clients send one request each for a segment no mirror has fetched, at the same instant; origin latency %v",
		cfg.FlashCrowd, max(cfg.OriginLatency, 0)))
	for _, v := range []struct {
		name  string
		start func() (url string, stop func(), err error)
	}{
		{MirrorStampede, func() (string, func(), error) {
			m, err := startStampede(ctx, cfg, org.url, true)
			if err != nil {
				return "", nil, err
			}
			return m.url, m.stop, nil
		}},
		{MirrorStampedeNoMerge, func() (string, func(), error) {
			m, err := startStampede(ctx, cfg, org.url, false)
			if err != nil {
				return "", nil, err
			}
			return m.url, m.stop, nil
		}},
		{MirrorNginxLockOff, func() (string, func(), error) {
			m, err := nginx.Start(ctx, nginxTuning(cfg, false), org.url)
			if err != nil {
				return "", nil, err
			}
			return m.URL(), func() { m.Stop() }, nil
		}},
		{MirrorNginxLockOn, func() (string, func(), error) {
			m, err := nginx.Start(ctx, nginxTuning(cfg, true), org.url)
			if err != nil {
				return "", nil, err
			}
			return m.URL(), func() { m.Stop() }, nil
		}},
	} {
		url, stop, err := v.start()
		if err != nil {
			return res, err
		}
		_, seg, err := org.currentPaths()
		if err != nil {
			stop()
			return res, err
		}
		// A query no one has asked for makes the segment new to this mirror's cache and
		// lets the origin count this mirror's requests alone.
		target := seg + "?flash=" + strings.NewReplacer(" ", "-", "=", "-").Replace(v.name)
		log.Info("flash crowd", "mirror", v.name, "clients", cfg.FlashCrowd)
		f, err := flashCrowd(ctx, url, playlist, target, cfg.FlashCrowd)
		stop()
		if err != nil {
			return res, fmt.Errorf("flash crowd on %s: %w", v.name, err)
		}
		f.Mirror = v.name
		f.UpstreamRequests = org.count(target)
		res.Flash = append(res.Flash, f)
	}
	return res, nil
}

// nginxTuning is the nginx side: one worker, the relay's cache rules, generous limits
// so that the comparison is of the hit path, not of limits.
func nginxTuning(cfg Config, lock bool) nginx.Tuning {
	t := nginx.Tuning{
		Name: "bench-mirror", WorkerProcesses: 1, WorkerConnections: 16384, WorkerRlimitNofile: 20000,
		PlaylistValid: time.Second, SegmentValid: 60 * time.Second, CacheLock: lock,
		UseStale: []string{"updating"}, UpstreamKeepalive: 32, Backlog: 4096, KeepaliveRequests: 1_000_000,
	}
	if cfg.Pin {
		t.WorkerCPUAffinity = "01"
	}
	return t
}

// benchOrigin is the in-process origin with a request counter and an optional delay.
type benchOrigin struct {
	o   *origin.Server
	srv *http.Server
	url string

	mu      sync.Mutex // protects counts and latency
	counts  map[string]int
	latency time.Duration
}

func startOrigin() (*benchOrigin, error) {
	o, err := origin.New(origin.Config{SegmentDuration: 2 * time.Second, Window: 6, Bitrate: 500_000,
		Epoch:  time.Now().Add(-30 * time.Second).Truncate(2 * time.Second),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		o.Close()
		return nil, err
	}
	b := &benchOrigin{o: o, url: "http://" + ln.Addr().String(), counts: map[string]int{}}
	h := o.Handler()
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.counts[r.URL.RequestURI()]++
		d := b.latency
		b.mu.Unlock()
		if d > 0 {
			time.Sleep(d) // a distant origin: serving code, not test synchronisation
		}
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

func (b *benchOrigin) setLatency(d time.Duration) {
	b.mu.Lock()
	b.latency = d
	b.mu.Unlock()
}

func (b *benchOrigin) count(uri string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts[uri]
}

func (b *benchOrigin) close() {
	b.srv.Close()
	b.o.Close()
}

// currentPaths returns the lowest rendition's media playlist and its newest segment.
func (b *benchOrigin) currentPaths() (playlist, segment string, err error) {
	names := b.o.Renditions()
	if len(names) == 0 {
		return "", "", errors.New("mirrorbench: origin has no renditions")
	}
	playlist = "/live/" + names[0] + "/index.m3u8"
	resp, err := http.Get(b.url + playlist)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			segment = l
		}
	}
	if segment == "" {
		return "", "", fmt.Errorf("mirrorbench: no segment in %s", playlist)
	}
	if !strings.HasPrefix(segment, "/") {
		segment = playlist[:strings.LastIndexByte(playlist, '/')+1] + segment
	}
	return playlist, segment, nil
}

// stampedeChild is `stampede mirror` running under test.
type stampedeChild struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

func startStampede(ctx context.Context, cfg Config, upstream string, coalesce bool) (*stampedeChild, error) {
	args := []string{"mirror", "--listen", "127.0.0.1:0", "--upstream", upstream, "--playlist-ttl", "1s",
		"--segment-ttl", "60s", "--stale-while-revalidate", "2s", fmt.Sprintf("--coalesce=%v", coalesce)}
	name := cfg.Stampede
	if cfg.Pin {
		args = append([]string{"-c", "0", cfg.Stampede}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // never outlive the bench
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Stampede, err)
	}
	c := &stampedeChild{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	var logMu sync.Mutex // protects logBuf
	var logBuf bytes.Buffer
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			if logBuf.Len() < 64<<10 {
				logBuf.WriteString(line + "\n")
			}
			logMu.Unlock()
			if _, rest, ok := strings.Cut(line, "msg=listening "); ok {
				_, rest, _ = strings.Cut(rest, "addr=")
				a, _, _ := strings.Cut(rest, " ")
				select {
				case addr <- a:
				default:
				}
			}
		}
		cmd.Wait()
		close(c.done)
	}()
	select {
	case a := <-addr:
		c.url = "http://" + a
		return c, nil
	case <-c.done:
		logMu.Lock()
		defer logMu.Unlock()
		return nil, fmt.Errorf("stampede mirror exited at start:\n%s", logBuf.String())
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, errors.New("stampede mirror did not start within 30 s")
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

func (c *stampedeChild) stop() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
}

func warm(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return err
}

// wrkScript prints wrk's summary as one JSON line, so nothing is parsed from its
// human-readable units.
const wrkScript = `done = function(summary, latency, requests)
  io.write(string.format('{"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`

type wrkSummary struct {
	DurationUs int64 `json:"duration_us"`
	Requests   int64 `json:"requests"`
	Bytes      int64 `json:"bytes"`
	Connect    int64 `json:"connect"`
	Read       int64 `json:"read"`
	Write      int64 `json:"write"`
	Status     int64 `json:"status"`
	Timeout    int64 `json:"timeout"`
	P50Us      int64 `json:"p50_us"`
	P99Us      int64 `json:"p99_us"`
}

func runWrk(ctx context.Context, cfg Config, url string, conns int) (Throughput, error) {
	dir, err := os.MkdirTemp("", "stampede-wrk-")
	if err != nil {
		return Throughput{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "summary.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o600); err != nil {
		return Throughput{}, err
	}
	threads := min(cfg.Threads, conns)
	args := []string{"-t", fmt.Sprint(threads), "-c", fmt.Sprint(conns), "-d", fmt.Sprintf("%ds", int(cfg.Duration.Seconds())),
		"--timeout", "10s", "-s", script, url}
	name := cfg.Wrk
	if cfg.Pin {
		args = append([]string{"-c", "1", cfg.Wrk}, args...)
		name = "taskset"
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return Throughput{}, fmt.Errorf("%v: %s", err, out)
	}
	return parseWrk(out)
}

// parseWrk reads the JSON line the script printed.
func parseWrk(out []byte) (Throughput, error) {
	for _, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if !bytes.HasPrefix(line, []byte(`{"duration_us"`)) {
			continue
		}
		var s wrkSummary
		if err := json.Unmarshal(line, &s); err != nil {
			return Throughput{}, fmt.Errorf("wrk summary %q: %w", line, err)
		}
		if s.DurationUs <= 0 {
			return Throughput{}, fmt.Errorf("wrk summary %q: no duration", line)
		}
		secs := float64(s.DurationUs) / 1e6
		return Throughput{
			ReqPerSec: float64(s.Requests) / secs, BytesPerSec: float64(s.Bytes) / secs, Requests: s.Requests,
			Errors: s.Connect + s.Read + s.Write + s.Status + s.Timeout,
			P50Ms:  float64(s.P50Us) / 1e3, P99Ms: float64(s.P99Us) / 1e3,
		}, nil
	}
	return Throughput{}, fmt.Errorf("no summary in wrk output:\n%s", out)
}

// flashCrowd opens n keep-alive connections (each warmed with a playlist request), then
// sends every one a request for target at the same instant and collects the answers.
func flashCrowd(ctx context.Context, base, warmPath, target string, n int) (Flash, error) {
	host := strings.TrimPrefix(base, "http://")
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	conns := make([]conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	for i := range n {
		if ctx.Err() != nil {
			return Flash{}, ctx.Err()
		}
		c, err := net.DialTimeout("tcp", host, 10*time.Second)
		if err != nil {
			return Flash{}, fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, conn{c, bufio.NewReader(c)})
	}
	// Warm every connection in parallel so each is accepted and idle in keep-alive.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.c.SetDeadline(time.Now().Add(60 * time.Second))
			if st, err := roundTrip(c.c, c.br, warmPath); err != nil || st != 200 {
				errs <- fmt.Errorf("warm-up: status %d, %v", st, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return Flash{}, err
	}
	start := make(chan struct{})
	type answer struct {
		status int
		took   time.Duration
	}
	answers := make(chan answer, n)
	for _, c := range conns {
		go func() {
			<-start
			t0 := time.Now()
			_ = c.c.SetDeadline(t0.Add(60 * time.Second))
			st, err := roundTrip(c.c, c.br, target)
			if err != nil {
				st = 0
			}
			answers <- answer{st, time.Since(t0)}
		}()
	}
	close(start)
	f := Flash{Clients: n, Statuses: map[string]int{}}
	took := make([]time.Duration, 0, n)
	for range n {
		a := <-answers
		key := fmt.Sprint(a.status)
		if a.status == 0 {
			key = "error"
		}
		f.Statuses[key]++
		took = append(took, a.took)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	f.P50Ms = float64(took[len(took)/2].Microseconds()) / 1e3
	f.MaxMs = float64(took[len(took)-1].Microseconds()) / 1e3
	return f, nil
}

func roundTrip(c net.Conn, br *bufio.Reader, path string) (int, error) {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: mirror\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// Print writes the result as tables with stampede/nginx ratios.
func (r *Result) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "Hit throughput (same origin, same cache rules, one core each)")
	fmt.Fprintln(tw, "kind\tconns\tstampede req/s\tnginx req/s\tratio\tstampede MB/s\tnginx MB/s\tratio\treq/CPU-s ratio\tstampede p99 ms\tnginx p99 ms\terrors s/n\t")
	for _, m := range r.Medians() {
		s, n := m[0], m[1]
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\t%.1f\t%d/%d\t\n", s.Kind, s.Connections,
			s.ReqPerSec, n.ReqPerSec, ratio(s.ReqPerSec, n.ReqPerSec),
			s.BytesPerSec/1e6, n.BytesPerSec/1e6, ratio(s.BytesPerSec, n.BytesPerSec),
			ratio(s.ReqPerCPUSecond, n.ReqPerCPUSecond), s.P99Ms, n.P99Ms, s.Errors, n.Errors)
	}
	tw.Flush()
	// Each round measures both mirrors back to back: the per-round ratios pair
	// measurements taken under the same background load.
	fmt.Fprintln(w, "req/s ratio by round (stampede/nginx, paired):")
	for _, m := range r.Medians() {
		var parts []string
		for round := 1; ; round++ {
			var s, n *Throughput
			for i := range r.Throughput {
				t := &r.Throughput[i]
				if t.Kind == m[0].Kind && t.Connections == m[0].Connections && t.Round == round {
					if t.Mirror == MirrorStampede {
						s = t
					} else if t.Mirror == MirrorNginx {
						n = t
					}
				}
			}
			if s == nil || n == nil {
				break
			}
			parts = append(parts, fmt.Sprintf("%.2f", ratio(s.ReqPerSec, n.ReqPerSec)))
		}
		fmt.Fprintf(w, "  %s %d conns: %s\n", m[0].Kind, m[0].Connections, strings.Join(parts, " "))
	}
	if len(r.Flash) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Flash crowd: one new segment, every client at once")
		fmt.Fprintln(tw, "mirror\tclients\tupstream requests\tstatuses\tp50 ms\tmax ms\t")
		for _, f := range r.Flash {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.1f\t%.1f\t\n", f.Mirror, f.Clients, f.UpstreamRequests, statuses(f.Statuses), f.P50Ms, f.MaxMs)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "- "+n)
	}
}

// Medians pairs, per kind and connection count, the stampede and nginx medians over
// the rounds (req/s, bytes/s and p99 each their own median; errors summed).
func (r *Result) Medians() [][2]Throughput {
	type key struct {
		kind  string
		conns int
	}
	by := map[key]map[string][]Throughput{}
	var order []key
	for _, t := range r.Throughput {
		k := key{t.Kind, t.Connections}
		if by[k] == nil {
			by[k] = map[string][]Throughput{}
			order = append(order, k)
		}
		by[k][t.Mirror] = append(by[k][t.Mirror], t)
	}
	out := make([][2]Throughput, 0, len(order))
	for _, k := range order {
		var pair [2]Throughput
		for i, name := range []string{MirrorStampede, MirrorNginx} {
			pair[i] = median(by[k][name])
			pair[i].Mirror, pair[i].Kind, pair[i].Connections = name, k.kind, k.conns
		}
		out = append(out, pair)
	}
	return out
}

func median(ts []Throughput) Throughput {
	var m Throughput
	if len(ts) == 0 {
		return m
	}
	pick := func(get func(Throughput) float64) float64 {
		v := make([]float64, len(ts))
		for i, t := range ts {
			v[i] = get(t)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	m.ReqPerSec = pick(func(t Throughput) float64 { return t.ReqPerSec })
	m.BytesPerSec = pick(func(t Throughput) float64 { return t.BytesPerSec })
	m.P50Ms = pick(func(t Throughput) float64 { return t.P50Ms })
	m.P99Ms = pick(func(t Throughput) float64 { return t.P99Ms })
	m.ReqPerCPUSecond = pick(func(t Throughput) float64 { return t.ReqPerCPUSecond })
	for _, t := range ts {
		m.Requests += t.Requests
		m.Errors += t.Errors
	}
	return m
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// cpuSeconds sums user+system CPU time of pids (and their threads) from /proc.
func cpuSeconds(pids []int) float64 {
	total := 0.0
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) start after ") ".
		_, rest, ok := bytes.Cut(b, []byte(") "))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) < 13 {
			continue
		}
		var utime, stime float64
		fmt.Sscan(f[11], &utime)
		fmt.Sscan(f[12], &stime)
		total += (utime + stime) / clockTicks
	}
	return total
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func statuses(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
