package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
	"github.com/stampede-live/stampede/loadgen/report"
	"github.com/stampede-live/stampede/scenarios"
)

// startBench starts a long baseline bench and returns once its viewers are playing.
func startBench(t *testing.T) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	s := load(t, "baseline")
	scale(s, 100, 60*time.Second, 2*time.Second)
	cmd, dir := benchCmd(t, s)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, 1000)
	up := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), "topology up") {
				seen = true
				close(up)
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case <-up:
	case <-time.After(60 * time.Second):
		t.Fatal("the bench did not start its topology within 60 s")
	}
	// Let the viewers play a little: the interruption must find something to report.
	deadline := time.Now().Add(30 * time.Second)
	for len(startedPids(t, dir)) < 5 {
		if time.Now().After(deadline) {
			t.Fatal("no processes recorded in events.log")
		}
		time.Sleep(50 * time.Millisecond) // polling a file another process writes
	}
	time.Sleep(2 * time.Second) // the viewers' run: not synchronisation, the length of what is measured
	return cmd, dir, lines
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func TestCtrlCWritesAnIncompleteSummaryAndStopsEverything(t *testing.T) {
	t.Parallel()
	cmd, dir, lines := startBench(t)
	pids := startedPids(t, dir)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the bench did not exit within 60 s of Ctrl-C")
	}
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	if code := exitCode(t, err); code != 130 {
		t.Errorf("exit %d after Ctrl-C, want 130\n%s", code, strings.Join(out, "\n"))
	}
	sum, rerr := report.Read(filepath.Join(dir, report.SummaryFile))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !sum.Incomplete || sum.Pass || len(sum.Tunings) != 1 || sum.Tunings[0].Requests.Segment == 0 {
		t.Errorf("summary after Ctrl-C: incomplete %v, pass %v, tunings %+v", sum.Incomplete, sum.Pass, sum.Tunings)
	}
	waitNoSurvivors(t, pids)
}

func TestKilledBenchLeavesNoProcess(t *testing.T) {
	t.Parallel()
	cmd, dir, _ := startBench(t)
	pids := startedPids(t, dir)
	// SIGKILL: no handler runs, no Close; the kernel's parent-death signal and the
	// supervisor's watchdog must still stop every server.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitNoSurvivors(t, pids)
}

func TestCapacityFindsTheFileLimit(t *testing.T) {
	t.Parallel()
	// Two mirrors with 160 open files each: the SLO breaks at a few hundred viewers,
	// when a mirror's accept() fails with EMFILE.
	src := `name: tiny-capacity
duration: 8s
topology: {mirrors: 2}
stream: {segment_duration: 1s}
viewers:
  arrivals: {kind: ramp, over: 3s}
  flags: {lag-limit: ` + lagLimit + `}
mirror: {nofile: 160}
slo: [errors == 0, stall_count == 0]
capacity: {start: 100, step: 100, max: 600, resolution: 50, step_duration: 8s}
`
	path := filepath.Join(t.TempDir(), "tiny.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cap")
	cmd := exec.Command(testbin.Stampede(t), "capacity", "--scenario", path, "--out", dir, "--subnet", nextSubnet())
	out, err := cmd.CombinedOutput()
	t.Logf("stampede capacity:\n%s", out)
	if code := exitCode(t, err); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, scenarios.CapacityFile))
	if err != nil {
		t.Fatal(err)
	}
	var res scenarios.CapacityResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Highest < 100 || res.FirstFailure <= res.Highest || res.FirstFailure-res.Highest > 50 || res.FirstFailure > 400 {
		t.Errorf("highest %d, first failure %d: want a bisected limit between 100 and 400", res.Highest, res.FirstFailure)
	}
	if res.Limit.Resource != scenarios.LimitFDs {
		t.Errorf("ran out first: %+v, want file descriptors", res.Limit)
	}
	p := res.Planner
	if p.Viewers != res.Highest || p.Mirrors != 2 || p.ViewersPerMirror <= 0 || p.MbitPerMirror <= 0 || p.FDsPer1000 < 900 {
		t.Errorf("planner figures %+v: want the highest passing step's, a descriptor or more per viewer", p)
	}
	if !strings.Contains(string(out), "ran out first:   fds") {
		t.Errorf("output lacks the verdict")
	}
}
