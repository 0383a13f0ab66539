package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stampede-live/stampede/internal/promtext"
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

// procState is what the sampler keeps of one process between samples.
type procState struct {
	client   *http.Client
	pid      int
	counts   *Counters       // the process's counters, totalled over its runs
	cpu      map[int]float64 // last CPU seconds per pid
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
	return SampleAll(ctx, s.targets(), func(tg target) string { return tg.name }, s.sampleOne)
}

// SampleAll reads every one of targets at once with sample, and files each one's
// figures under its name. At is when the last answer came.
func SampleAll[T any](ctx context.Context, targets []T, name func(T) string, sample func(context.Context, T) Figures) Sample {
	figs := make([]Figures, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			figs[i] = sample(ctx, tg)
		}()
	}
	wg.Wait()
	out := Sample{At: time.Now(), Procs: make(map[string]Figures, len(targets))}
	for i, tg := range targets {
		out.Procs[name(tg)] = figs[i]
	}
	return out
}

func (s *Sampler) stateOf(name string) *procState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.state[name]
	if !ok {
		st = &procState{client: promtext.NewClient(DefaultScrapeTimeout), counts: NewCounters(), cpu: map[int]float64{}}
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
		st.counts.NewRun()
		st.pid = pid
	}
	pids := []int{pid}
	if f.Kind == MirrorNginx && pid != 0 {
		pids = append(pids, childrenOf(pid)...)
	}
	f.CPUSeconds = st.addCPU(pids)
	if pid == 0 {
		f.Err = "not running"
		st.counts.Fill(&f)
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
	st.counts.Fill(&f)
	f.At = time.Now()
	return f
}

// Counters turn a server's raw counter readings, which start from 0 again with each
// run, into totals over every run. Use one per server, from one goroutine at a time.
type Counters struct {
	raw   map[string]float64 // last raw value of each counter, this run
	total map[string]float64 // totals over every run
}

// NewCounters returns counters with nothing counted.
func NewCounters() *Counters {
	return &Counters{raw: map[string]float64{}, total: map[string]float64{}}
}

// NewRun starts a new run of the server: its next readings count from zero.
func (c *Counters) NewRun() { c.raw = map[string]float64{} }

// Add records a raw reading of counter key, treating a drop as a restart.
func (c *Counters) Add(key string, v float64) {
	last, seen := c.raw[key]
	switch {
	case !seen || v < last:
		c.total[key] += v
	default:
		c.total[key] += v - last
	}
	c.raw[key] = v
}

// Total is counter key's total over every run.
func (c *Counters) Total(key string) float64 { return c.total[key] }

// Fill copies the totals into f's counters; CPUSeconds is the caller's, whose source
// differs (/proc here, the server's own metric in a container).
func (c *Counters) Fill(f *Figures) {
	f.Requests = c.total["requests"]
	f.Hits = c.total["hits"]
	f.Upstream = c.total["upstream"]
	f.UpstreamSegments = c.total["upstream_segments"]
	f.UpstreamErrors = c.total["upstream_errors"]
	f.EMFILE = c.total["emfile"]
	f.Shed = c.total["shed"]
	f.SentBytes = c.total["sent_bytes"]
	f.SegmentsBuilt = c.total["segments_built"]
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
	fams, err := promtext.Scrape(ctx, st.client, tg.proc.URL()+"/metrics")
	if err != nil {
		return err
	}
	ReadStampede(fams, tg.role, st.counts, f)
	return nil
}

// ReadStampede reads the figures of a stampede server of the given role (RoleOrigin,
// RoleMirror, RoleCounter) from its scrape: levels into f, counters into c.
func ReadStampede(fams promtext.Families, role string, c *Counters, f *Figures) {
	sum := func(name string, keep func(labels map[string]string) bool) float64 {
		return promtext.Sum(fams[name], keep)
	}
	labelIn := promtext.LabelIn
	f.OpenFDs = int64(sum("process_open_fds", nil))
	f.MaxFDs = int64(sum("process_max_fds", nil))
	switch role {
	case RoleOrigin:
		c.Add("requests", sum("stampede_origin_requests_total", labelIn("kind", "master", "playlist", "segment")))
		c.Add("segments_built", sum("stampede_origin_segments_built_total", nil))
	case RoleMirror:
		c.Add("requests", sum("stampede_mirror_requests_total", nil))
		c.Add("hits", sum("stampede_mirror_requests_total", labelIn("result", "hit", "stale")))
		c.Add("upstream", sum("stampede_mirror_upstream_requests_total", nil))
		c.Add("upstream_segments", sum("stampede_mirror_upstream_requests_total", labelIn("kind", "segment")))
		c.Add("upstream_errors", sum("stampede_mirror_upstream_errors_total", nil))
		c.Add("emfile", sum("stampede_mirror_emfile_total", nil))
		c.Add("shed", sum("stampede_mirror_shed_total", nil))
		c.Add("sent_bytes", sum("stampede_mirror_sent_bytes_total", nil))
		f.Conns = int64(sum("stampede_mirror_client_connections", nil))
		if _, ok := fams["stampede_mirror_open_fds"]; ok {
			f.OpenFDs = int64(sum("stampede_mirror_open_fds", nil))
			f.MaxFDs = int64(sum("stampede_mirror_max_fds", nil))
		}
	case RoleCounter:
		c.Add("requests", sum("stampede_counter_heartbeats_total", nil))
		f.Viewers = int64(sum("stampede_counter_viewers", nil))
	}
}

func (s *Sampler) sampleNginx(ctx context.Context, st *procState, tg target, pids []int, f *Figures) error {
	m := tg.mirror
	// error.log first: it is there even when nginx has no connection left to answer.
	st.readErrorLog(m.ErrorLog())
	st.counts.total["emfile"] = st.errs.emfile
	st.counts.total["shed"] = st.errs.workerConns
	// nginx opens one upstream connection per upstream request (no upstream keepalive),
	// so the link's accepted connections are its upstream requests.
	st.counts.total["upstream"] = float64(m.Upstream.Stats().Accepted)
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
	c := st.counts
	c.Add("requests_raw", float64(ss.Requests))
	c.total["requests"] = max(0, c.total["requests_raw"]-st.probes)
	c.total["hits"] = max(0, c.total["requests"]-c.total["upstream"])
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
