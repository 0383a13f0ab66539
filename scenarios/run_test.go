package scenarios

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
	"github.com/stampede-live/stampede/loadgen/report"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// tinyRun is a scenario small enough to run under the race detector in seconds: the
// whole relay, 20 viewers, half-second segments.
func tinyRun(t *testing.T, duration string, tunings string) *Scenario {
	t.Helper()
	return mustParse(t, `name: tiny
duration: `+duration+`
stream: {segment_duration: 500ms}
viewers:
  count: 20
  arrivals: {kind: ramp, over: 1s}
  heartbeat: 1s
mirror: {playlist_ttl: 500ms}
thresholds: [errors == 0, counter_crashes == 0]
`+tunings)
}

// subnets gives each test its own loopback /24 for its servers.
var subnets = make(chan int, 1)

func init() { subnets <- 160 }

func runConfig(t *testing.T) RunConfig {
	t.Helper()
	n := <-subnets
	subnets <- n + 1
	return RunConfig{Binary: testbin.Stampede(t), Dir: filepath.Join(t.TempDir(), "run"), Subnet: "127.0." + strconv.Itoa(n), ScrapeInterval: 500 * time.Millisecond}
}

// startedPids reads every pid a run started from its tunings' events.log.
func startedPids(t *testing.T, dir string) []int {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*", EventsFile))
	var pids []int
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			_, rest, ok := strings.Cut(sc.Text(), " started: pid ")
			if !ok {
				_, rest, ok = strings.Cut(sc.Text(), " restarted: pid ")
			}
			if ok {
				var pid int
				fmt.Sscan(rest, &pid)
				pids = append(pids, pid)
			}
		}
		f.Close()
	}
	return pids
}

// runningPids are the pids still alive (not zombies).
func runningPids(pids []int) []int {
	var out []int
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] != "Z" && f[0] != "X" {
			out = append(out, pid)
		}
	}
	return out
}

// assertNoSurvivors polls until none of the run's processes is alive.
func assertNoSurvivors(t *testing.T, dir string, want int) {
	t.Helper()
	pids := startedPids(t, dir)
	if len(pids) < want {
		t.Fatalf("found %d started processes in %s, want at least %d", len(pids), dir, want)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := runningPids(pids)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v of the run survived it", left)
		}
		time.Sleep(50 * time.Millisecond) // polling the process table, not synchronising
	}
}

var _ Reporter = (*recordingReporter)(nil)

// recordingReporter notes each call, as report.html's renderer would be called.
type recordingReporter struct {
	mu   sync.Mutex // protects dirs, inc
	dirs []string
	inc  []bool // each call's Summary.Incomplete
}

func (r *recordingReporter) Report(dir string, res *RunResult) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirs = append(r.dirs, dir)
	r.inc = append(r.inc, res.Summary.Incomplete)
	return nil
}

func TestRunMeasuresTheRelayAndStopsIt(t *testing.T) {
	t.Parallel()
	s := tinyRun(t, "4s", `tunings:
  - name: a
    expect: [errors == 0]
  - name: b
    mirror: {coalesce: false}
    expect: [viewers_peak == a.viewers_peak]
`)
	cfg := runConfig(t)
	rep := &recordingReporter{}
	cfg.Reporters = []Reporter{rep}
	var mu sync.Mutex // protects targets
	var targets []Target
	cfg.OnTarget = func(tg Target) {
		mu.Lock()
		defer mu.Unlock()
		targets = append(targets, tg)
	}
	// BeforeViewers sees each tuning's six targets, the viewers' included, before any
	// viewer has arrived.
	var before [][]Target
	cfg.BeforeViewers = func(ctx context.Context, ts []Target) error {
		mu.Lock()
		defer mu.Unlock()
		before = append(before, append([]Target(nil), ts...))
		if got := len(targets); got != 6*len(before) {
			t.Errorf("BeforeViewers call %d: %d targets announced so far, want %d", len(before), got, 6*len(before))
		}
		return errors.New("prometheus never scraped (test)") // noted, not fatal
	}
	res, err := Run(context.Background(), s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 2 || len(before[0]) != 6 || before[0][5].Job != "viewers" {
		t.Errorf("BeforeViewers calls %+v, want 2 of 6 targets ending with the viewers", before)
	}
	sum, err := report.Read(filepath.Join(cfg.Dir, report.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Pass || sum.Incomplete || len(sum.Tunings) != 2 || sum.Scenario != "tiny" || sum.Run != "run" {
		t.Fatalf("summary: pass %v incomplete %v tunings %d: %+v", sum.Pass, sum.Incomplete, len(sum.Tunings), sum)
	}
	for _, tun := range sum.Tunings {
		if tun.Viewers.Peak != 20 || tun.Requests.Segment == 0 || tun.Origin.Requests == 0 || len(tun.Mirrors) != 3 ||
			tun.Counter.Crashes != 0 || len(tun.Gates) != 2 || !tun.Pass {
			t.Errorf("tuning %s: %+v", tun.Name, tun)
		}
		var served int64
		for _, m := range tun.Mirrors {
			served += m.UpstreamRequests
			if m.MaxOpenFDs <= 0 || m.Kind != "stampede" {
				t.Errorf("tuning %s mirror %+v: no open files measured", tun.Name, m)
			}
		}
		// Every origin request came from a mirror: the origin is not exposed.
		if served != tun.Origin.Requests {
			t.Errorf("tuning %s: mirrors fetched %d, origin served %d", tun.Name, served, tun.Origin.Requests)
		}
		for _, f := range []string{"series.json", ServersFile, ResultsFile, EventsFile, "logs/origin.log", "logs/mirror-3.log", "logs/counter.log"} {
			if _, err := os.Stat(filepath.Join(cfg.Dir, tun.Name, f)); err != nil {
				t.Errorf("tuning %s: %v", tun.Name, err)
			}
		}
		ss, err := report.ReadServers(filepath.Join(cfg.Dir, tun.Name, ServersFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(ss.Points) < 4 || len(ss.Processes) != 5 || ss.Points[len(ss.Points)-1].Procs["counter"].Viewers == nil {
			t.Errorf("tuning %s servers.json: %d points, %d processes", tun.Name, len(ss.Points), len(ss.Processes))
		}
	}
	if len(res.Expectations) != 2 || !res.Expectations[0].Pass || !res.Expectations[1].Pass {
		t.Errorf("expectations %+v", res.Expectations)
	}
	if !strings.Contains(strings.Join(sum.Tunings[0].Notes, "\n"), "lesson: expected errors == 0: held") {
		t.Errorf("notes %q lack the lesson's verdict", sum.Tunings[0].Notes)
	}
	// Prometheus gets every /metrics server and the viewers, labelled with run and tuning.
	mu.Lock()
	if len(targets) != 2*(1+3+1+1) {
		t.Errorf("%d targets, want 12 (origin, 3 mirrors, counter, viewers per tuning): %+v", len(targets), targets)
	}
	for _, tg := range targets {
		if tg.Labels["run"] != "run" || tg.Labels["tuning"] == "" || tg.Addr == "" {
			t.Errorf("target %+v", tg)
		}
	}
	mu.Unlock()
	if len(rep.dirs) != 1 || rep.dirs[0] != cfg.Dir || rep.inc[0] {
		t.Errorf("reporter calls %v %v", rep.dirs, rep.inc)
	}
	assertNoSurvivors(t, cfg.Dir, 10)
}

func TestRunInterruptedWritesAnIncompleteSummary(t *testing.T) {
	t.Parallel()
	s := tinyRun(t, "60s", "tunings: [{name: first}, {name: second}]\n")
	cfg := runConfig(t)
	rep := &recordingReporter{}
	cfg.Reporters = []Reporter{rep}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupt two seconds after the first topology is up: the viewers are playing.
	pr, pw, _ := os.Pipe()
	cfg.Progress = pw
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "topology up") {
				time.AfterFunc(2*time.Second, cancel)
			}
		}
	}()
	res, err := Run(ctx, s, cfg)
	pw.Close()
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	sum, rerr := report.Read(filepath.Join(cfg.Dir, report.SummaryFile))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !sum.Incomplete || sum.Pass || len(sum.Tunings) != 1 || sum.Tunings[0].Name != "first" || sum.Tunings[0].Pass {
		t.Fatalf("summary after Ctrl-C: %+v", sum)
	}
	if d := sum.Tunings[0].DurationS; d < 1 || d > 30 {
		t.Errorf("interrupted tuning ran %vs", d)
	}
	if sum.Tunings[0].Requests.Segment == 0 || res.Tunings[0].Servers == nil {
		t.Errorf("nothing measured before the interruption: %+v", sum.Tunings[0])
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "second")); !os.IsNotExist(err) {
		t.Errorf("the second tuning started after the interruption: %v", err)
	}
	if len(rep.inc) != 1 || !rep.inc[0] {
		t.Errorf("reporter saw %v, want one incomplete run", rep.inc)
	}
	assertNoSurvivors(t, cfg.Dir, 5)
}

func TestRunPanicStopsEveryProcess(t *testing.T) {
	// Not parallel: it sets the package's test hook.
	s := tinyRun(t, "30s", "")
	cfg := runConfig(t)
	testHookStarted = func() { panic("runner bug") }
	defer func() { testHookStarted = nil }()
	func() {
		defer func() {
			if r := recover(); r != "runner bug" {
				t.Errorf("recovered %v, want the hook's panic", r)
			}
		}()
		Run(context.Background(), s, cfg)
	}()
	assertNoSurvivors(t, cfg.Dir, 5)
}

func TestRunRefusesBadInputBeforeStartingAnything(t *testing.T) {
	s := tinyRun(t, "4s", "")
	cfg := runConfig(t)
	s.Tunings[0].Mirror.Kind = MirrorNginx
	s.Tunings[0].Mirror.Flags = Flags{"no-such-directive": "1"}
	_, err := Run(context.Background(), s, cfg)
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "no-such-directive") {
		t.Fatalf("err = %v, want a field error naming the flag", err)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Errorf("a refused run created %s", cfg.Dir)
	}
	if _, err := Run(context.Background(), s, RunConfig{Dir: cfg.Dir}); err == nil {
		t.Error("a run without the stampede binary started")
	}
}
