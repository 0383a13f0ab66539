package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/scenarios"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// subnets gives each bench its own loopback /24 for its servers, apart from other
// packages' tests.
var subnets = make(chan int, 1)

func init() { subnets <- 200 }

func nextSubnet() string {
	n := <-subnets
	subnets <- n + 1
	return "127.0." + strconv.Itoa(n)
}

// load reads a shipped scenario, the file the lesson is written in.
func load(t *testing.T, name string) *scenarios.Scenario {
	t.Helper()
	s, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// each applies f to the base settings and every tuning's resolved settings.
func each(s *scenarios.Scenario, f func(st *scenarios.Settings)) {
	f(&s.Settings)
	for i := range s.Tunings {
		f(&s.Tunings[i].Settings)
	}
}

// lagLimit is the generator's timer-lag limit in these tests. The machine running
// them is shared (other packages' tests run beside them): the lessons are about the
// servers, so a generator a few hundred milliseconds late is not an invalid run here,
// as it would be for a benchmark.
const lagLimit = "1s"

// scale shrinks a scenario to fit the test budget: one-second segments (the players'
// buffer and the mirrors' TTLs keep their proportions), fewer viewers, a short run.
func scale(s *scenarios.Scenario, viewers int, run, over time.Duration) {
	s.Duration = scenarios.Duration(run)
	each(s, func(st *scenarios.Settings) {
		st.Stream.SegmentDuration = scenarios.Duration(time.Second)
		st.Viewers.Count = viewers
		if st.Viewers.Arrivals.Kind == scenarios.ArrivalRamp {
			st.Viewers.Arrivals.Over = scenarios.Duration(over)
		}
		if st.Viewers.Flags == nil {
			st.Viewers.Flags = scenarios.Flags{}
		}
		st.Viewers.Flags["lag-limit"] = lagLimit
	})
}

// rename gives a tuning the name of its scaled-down setting.
func rename(t *testing.T, s *scenarios.Scenario, from, to string) *scenarios.Tuning {
	t.Helper()
	tun, ok := s.Tuning(from)
	if !ok {
		t.Fatalf("%s has no tuning %s", s.Name, from)
	}
	tun.Name = to
	return tun
}

// benchRun is one `stampede bench` of a scaled scenario.
type benchRun struct {
	t    *testing.T
	s    *scenarios.Scenario
	dir  string
	out  string // stdout and stderr
	code int
	sum  *report.Summary
}

// writeScenario validates s and writes it where the bench can read it.
func writeScenario(t *testing.T, s *scenarios.Scenario) string {
	t.Helper()
	if err := s.Validate(); err != nil {
		t.Fatalf("scaled scenario: %v", err)
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), s.Name+".yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// benchCmd is `stampede bench` on s, writing into a fresh directory.
func benchCmd(t *testing.T, s *scenarios.Scenario, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	args := append([]string{"bench", "--scenario", writeScenario(t, s), "--out", dir, "--subnet", nextSubnet(), "--results-sample", "0"}, extra...)
	cmd := exec.Command(testbin.Stampede(t), args...)
	return cmd, dir
}

// bench runs s to the end and reads its summary.
func bench(t *testing.T, s *scenarios.Scenario) *benchRun {
	t.Helper()
	cmd, dir := benchCmd(t, s)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := &benchRun{t: t, s: s, dir: dir, out: out.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	r.sum, err = report.Read(filepath.Join(dir, report.SummaryFile))
	if err != nil {
		t.Fatalf("%v\n%s", err, r.out)
	}
	t.Logf("stampede bench %s (exit %d):\n%s", s.Name, r.code, r.out)
	return r
}

func (r *benchRun) tuning(name string) *report.Tuning {
	r.t.Helper()
	for i := range r.sum.Tunings {
		if r.sum.Tunings[i].Name == name {
			return &r.sum.Tunings[i]
		}
	}
	r.t.Fatalf("no tuning %s in the summary", name)
	return nil
}

func (r *benchRun) servers(name string) *report.ServerSeries {
	r.t.Helper()
	ss, err := report.ReadServers(filepath.Join(r.dir, name, scenarios.ServersFile))
	if err != nil {
		r.t.Fatal(err)
	}
	return ss
}

// lessonsHold asserts every tuning's `expect` list held: the lesson the scenario file
// states is what the run showed.
func (r *benchRun) lessonsHold() {
	r.t.Helper()
	checks := scenarios.Expectations(r.s, r.sum)
	if len(checks) == 0 {
		r.t.Error("no expectations were checked")
	}
	for _, c := range checks {
		if !c.Pass {
			r.t.Errorf("lesson did not hold: tuning %s: %s (value %v %s)", c.Tuning, c.Rule, c.Value, c.Detail)
		}
	}
}

// sumMirrors adds up one figure over a tuning's mirrors.
func sumMirrors(t *report.Tuning, f func(m report.MirrorFigure) int64) int64 {
	var n int64
	for _, m := range t.Mirrors {
		n += f(m)
	}
	return n
}

// startedPids reads every pid a run started from its tunings' events.log.
func startedPids(t *testing.T, dir string) []int {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*", scenarios.EventsFile))
	var pids []int
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			for _, marker := range []string{" started: pid ", " restarted: pid "} {
				if _, rest, ok := strings.Cut(sc.Text(), marker); ok {
					var pid int
					fmt.Sscan(rest, &pid)
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// waitNoSurvivors polls until none of pids runs (zombies count as gone).
func waitNoSurvivors(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil {
				continue
			}
			s := string(b)
			if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] != "Z" && f[0] != "X" {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("processes %v outlived the bench", left)
		}
		time.Sleep(50 * time.Millisecond) // polling the process table, not synchronising
	}
}
