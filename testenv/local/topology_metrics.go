package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stampede-live/stampede/testenv/nginx"
)

// DefaultScrapeTimeout bounds one scrape of one process. A SIGSTOPped server never
// answers; its sample says it is down and the next one tries again.
const DefaultScrapeTimeout = 2 * time.Second

// Figures are one process's measures at one moment. Counters (Requests, Hits, …) are
// totals since the topology started, added up over the process's restarts (a restarted
// server starts its own counters from 0); levels (OpenFDs, Conns, Viewers) are as of the
// sample.
type Figures struct {
	Role string // origin, mirror, counter
	Kind string // mirrors: stampede or nginx
	// Up is true when the process answered this scrape.
	Up  bool
	Pid int
	// CPUSeconds is user+system CPU time from /proc (nginx workers included), over every
	// run of the process.
	CPUSeconds float64
	// OpenFDs is the number of open file descriptors; MaxFDs the open-files limit.
	OpenFDs, MaxFDs int64
	// Conns is the number of open client connections (mirrors).
	Conns int64
	// Requests: the origin's media requests (master, playlists, segments), a mirror's
	// client requests, the counter's heartbeats.
	Requests float64
	// Hits are a mirror's requests answered from its cache (fresh or stale).
	Hits float64
	// Upstream and UpstreamSegments are a mirror's requests to the origin (all, and for
	// segments); UpstreamErrors its failed fetches.
	Upstream, UpstreamSegments, UpstreamErrors float64
	// EMFILE counts a mirror's accept/dial failures for want of a file descriptor; Shed
	// the connections it refused at its connection limit (nginx: "worker_connections are
	// not enough").
	EMFILE, Shed float64
	// SentBytes is what a stampede mirror sent its clients (body bytes).
	SentBytes float64
	// SegmentsBuilt is how many distinct segments the origin made.
	SegmentsBuilt float64
	// Viewers is the counter's current count.
	Viewers int64
	// Err is why the scrape failed, when it did.
	Err string
	// At is when these figures were read: processes are scraped at once but answer at
	// their own pace, so rates use each process's own interval.
	At time.Time
}

// Sample is every process of a topology at one moment, by process name.
type Sample struct {
	At    time.Time
	Procs map[string]Figures
}

// Sampler scrapes a topology's processes: /metrics of stampede servers, stub_status,
// error.log and /proc for nginx, /proc for CPU time. Use one Sampler per topology; its
// Sample is safe to call from one goroutine at a time.
type Sampler struct {
	t       *Topology
	timeout time.Duration

	mu    sync.Mutex // protects state
	state map[string]*procState
}

// procState turns one process's raw counters, which restart from 0 with the process,
// into totals.
type procState struct {
	client   *http.Client
	pid      int
	raw      map[string]float64 // last raw value of each counter, this run
	total    map[string]float64 // totals over every run
	cpu      map[int]float64    // last CPU seconds per pid
	cpuTotal float64
	logOff   int64            // nginx: how far error.log was read
	errs     nginxErrorCounts // nginx: error.log classes so far
	probes   float64          // nginx: our own stub_status requests (they count as requests)
}

type nginxErrorCounts struct{ emfile, workerConns float64 }

// NewSampler returns a sampler for t.
func (t *Topology) NewSampler() *Sampler {
	return &Sampler{t: t, timeout: DefaultScrapeTimeout, state: map[string]*procState{}}
}

type target struct {
	name, role string
	proc       *Process
	mirror     *TopologyMirror
}

func (s *Sampler) targets() []target {
	out := []target{{name: RoleOrigin, role: RoleOrigin, proc: s.t.origin}}
	for _, m := range s.t.mirrors {
		out = append(out, target{name: m.Name, role: RoleMirror, proc: m.Process, mirror: m})
	}
	if s.t.counter != nil {
		out = append(out, target{name: RoleCounter, role: RoleCounter, proc: s.t.counter})
	}
	return out
}

// Sample scrapes every process at once and returns their figures.
func (s *Sampler) Sample(ctx context.Context) Sample {
	ts := s.targets()
	figs := make([]Figures, len(ts))
	var wg sync.WaitGroup
	for i, tg := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			figs[i] = s.sampleOne(ctx, tg)
		}()
	}
	wg.Wait()
	out := Sample{At: time.Now(), Procs: make(map[string]Figures, len(ts))}
	for i, tg := range ts {
		out.Procs[tg.name] = figs[i]
	}
	return out
}

func (s *Sampler) stateOf(name string) *procState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.state[name]
	if !ok {
		st = &procState{
			// One kept-alive connection per process: the scrape still gets through when a
			// server is out of file descriptors or at its connection limit.
			client: &http.Client{Transport: &http.Transport{
				Proxy: nil, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: time.Minute,
				DialContext: (&net.Dialer{Timeout: DefaultScrapeTimeout}).DialContext,
			}},
			raw: map[string]float64{}, total: map[string]float64{}, cpu: map[int]float64{},
		}
		s.state[name] = st
	}
	return st
}

func (s *Sampler) sampleOne(ctx context.Context, tg target) Figures {
	st := s.stateOf(tg.name)
	f := Figures{Role: tg.role}
	if tg.mirror != nil {
		f.Kind = tg.mirror.Kind
	}
	if tg.proc == nil {
		f.Err = "not started"
		return f
	}
	pid := tg.proc.Pid()
	f.Pid = pid
	if pid != st.pid {
		// A new run (a restart, or the first sample): its counters start from zero.
		st.raw = map[string]float64{}
		st.pid = pid
	}
	pids := []int{pid}
	if f.Kind == MirrorNginx && pid != 0 {
		pids = append(pids, childrenOf(pid)...)
	}
	f.CPUSeconds = st.addCPU(pids)
	if pid == 0 {
		f.Err = "not running"
		s.fillTotals(st, &f)
		f.At = time.Now()
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var err error
	if f.Kind == MirrorNginx {
		err = s.sampleNginx(ctx, st, tg, pids, &f)
	} else {
		err = s.sampleStampede(ctx, st, tg, &f)
	}
	if err != nil {
		f.Err = err.Error()
	} else {
		f.Up = true
	}
	s.fillTotals(st, &f)
	f.At = time.Now()
	return f
}

// counter adds a raw counter reading to its total, treating a drop as a restart.
func (st *procState) counter(key string, v float64) {
	last, seen := st.raw[key]
	switch {
	case !seen || v < last:
		st.total[key] += v
	default:
		st.total[key] += v - last
	}
	st.raw[key] = v
}

func (s *Sampler) fillTotals(st *procState, f *Figures) {
	f.Requests = st.total["requests"]
	f.Hits = st.total["hits"]
	f.Upstream = st.total["upstream"]
	f.UpstreamSegments = st.total["upstream_segments"]
	f.UpstreamErrors = st.total["upstream_errors"]
	f.EMFILE = st.total["emfile"]
	f.Shed = st.total["shed"]
	f.SentBytes = st.total["sent_bytes"]
	f.SegmentsBuilt = st.total["segments_built"]
}

// addCPU reads the CPU time of pids from /proc and returns the process's total.
func (st *procState) addCPU(pids []int) float64 {
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		c, err := procCPUSeconds(pid)
		if err != nil {
			continue
		}
		last := st.cpu[pid]
		if c > last {
			st.cpuTotal += c - last
			st.cpu[pid] = c
		}
	}
	return st.cpuTotal
}

func (s *Sampler) sampleStampede(ctx context.Context, st *procState, tg target, f *Figures) error {
	fams, err := scrape(ctx, st.client, tg.proc.URL()+"/metrics")
	if err != nil {
		return err
	}
	sum := func(name string, keep func(labels map[string]string) bool) float64 {
		return sumFamily(fams[name], keep)
	}
	f.OpenFDs = int64(sum("process_open_fds", nil))
	f.MaxFDs = int64(sum("process_max_fds", nil))
	switch tg.role {
	case RoleOrigin:
		st.counter("requests", sum("stampede_origin_requests_total", labelIn("kind", "master", "playlist", "segment")))
		st.counter("segments_built", sum("stampede_origin_segments_built_total", nil))
	case RoleMirror:
		st.counter("requests", sum("stampede_mirror_requests_total", nil))
		st.counter("hits", sum("stampede_mirror_requests_total", labelIn("result", "hit", "stale")))
		st.counter("upstream", sum("stampede_mirror_upstream_requests_total", nil))
		st.counter("upstream_segments", sum("stampede_mirror_upstream_requests_total", labelIn("kind", "segment")))
		st.counter("upstream_errors", sum("stampede_mirror_upstream_errors_total", nil))
		st.counter("emfile", sum("stampede_mirror_emfile_total", nil))
		st.counter("shed", sum("stampede_mirror_shed_total", nil))
		st.counter("sent_bytes", sum("stampede_mirror_sent_bytes_total", nil))
		f.Conns = int64(sum("stampede_mirror_client_connections", nil))
		if _, ok := fams["stampede_mirror_open_fds"]; ok {
			f.OpenFDs = int64(sum("stampede_mirror_open_fds", nil))
			f.MaxFDs = int64(sum("stampede_mirror_max_fds", nil))
		}
	case RoleCounter:
		st.counter("requests", sum("stampede_counter_heartbeats_total", nil))
		f.Viewers = int64(sum("stampede_counter_viewers", nil))
	}
	return nil
}

func (s *Sampler) sampleNginx(ctx context.Context, st *procState, tg target, pids []int, f *Figures) error {
	m := tg.mirror
	// error.log first: it is there even when nginx has no connection left to answer.
	st.readErrorLog(m.ErrorLog())
	st.total["emfile"] = st.errs.emfile
	st.total["shed"] = st.errs.workerConns
	// nginx opens one upstream connection per upstream request (no upstream keepalive),
	// so the link's accepted connections are its upstream requests.
	st.total["upstream"] = float64(m.Upstream.Stats().Accepted)
	fds := 0
	for _, pid := range pids {
		if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
			fds += len(ents)
		}
	}
	f.OpenFDs = int64(fds)
	if n := m.Process.Nofile(); n > 0 {
		f.MaxFDs = int64(n)
	} else {
		f.MaxFDs = procMaxFDs(pids[0])
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Process.URL()+nginx.DefaultStubStatusPath, nil)
	if err != nil {
		return err
	}
	resp, err := st.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stub_status: %s", resp.Status)
	}
	ss, err := nginx.ParseStubStatus(string(b))
	if err != nil {
		return err
	}
	st.probes++
	// stub_status counts itself: take our probes out of the requests.
	st.counter("requests_raw", float64(ss.Requests))
	st.total["requests"] = max(0, st.total["requests_raw"]-st.probes)
	st.total["hits"] = max(0, st.total["requests"]-st.total["upstream"])
	f.Conns = max(0, ss.Active-1) // less our own connection
	return nil
}

// readErrorLog counts the error.log lines written since the last call.
func (st *procState) readErrorLog(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(st.logOff, io.SeekStart); err != nil {
		return
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if !strings.HasSuffix(line, "\n") {
			return // a partial last line is read whole next time
		}
		st.logOff += int64(len(line))
		switch nginx.ClassifyErrorLine(line) {
		case nginx.ClassTooManyOpenFiles:
			st.errs.emfile++
		case nginx.ClassWorkerConnections:
			st.errs.workerConns++
		}
		if err != nil {
			return
		}
	}
}

// maxMetricsSize bounds one /metrics answer.
const maxMetricsSize = 8 << 20

func scrape(ctx context.Context, c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsSize))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return fams, nil
}

// sumFamily adds up the values of a family's series that keep accepts (all when nil).
func sumFamily(f *dto.MetricFamily, keep func(map[string]string) bool) float64 {
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.GetMetric() {
		if keep != nil {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if !keep(labels) {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

func labelIn(name string, values ...string) func(map[string]string) bool {
	return func(l map[string]string) bool {
		for _, v := range values {
			if l[name] == v {
				return true
			}
		}
		return false
	}
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// procCPUSeconds is utime+stime of pid.
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime+stime, in seconds, from a /proc/<pid>/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted from the last ')'.
func parseStatCPU(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("malformed stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat: bad utime or stime")
	}
	return float64(ut+st) / clockTicks, nil
}

// ProcessCPUSeconds is the CPU time (user+system) pid has used, from /proc.
func ProcessCPUSeconds(pid int) (float64, error) { return procCPUSeconds(pid) }

// childrenOf lists pid's child processes (nginx's workers).
func childrenOf(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// procMaxFDs reads the soft open-files limit of pid.
func procMaxFDs(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
