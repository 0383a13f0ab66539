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
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

func TestStartServesOnOwnAddressAndLogs(t *testing.T) {
	s := newSupervisor(t, Config{})
	p := startChild(t, s, "origin", nil)
	q := startChild(t, s, "mirror-1", nil)

	// Each process has its own loopback IP in the subnet, and answers there.
	host := strings.Split(p.Addr(), ":")[0]
	if !strings.HasPrefix(host, s.cfg.Subnet+".") || host == strings.Split(q.Addr(), ":")[0] {
		t.Errorf("addresses %s and %s: want distinct IPs in %s", p.Addr(), q.Addr(), s.cfg.Subnet)
	}
	if got := getInt(t, p.URL()+"/pid"); got != p.Pid() || got == 0 {
		t.Errorf("/pid = %d, Pid() = %d", got, p.Pid())
	}
	if a, _ := s.Addr("origin"); a != p.Addr() {
		t.Errorf("Addr(origin) = %s after start, process has %s", a, p.Addr())
	}
	// Both stdout and stderr land in the log file.
	b, err := os.ReadFile(p.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"child: hello on stdout", "child: hello on stderr", "start 1 of origin"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("log lacks %q:\n%s", want, b)
		}
	}
	if _, err := s.Start(context.Background(), childSpec("origin")); err == nil {
		t.Error("a second process called origin was started")
	}
	pid := p.Pid()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, map[int]string{pid: ""}, "stopped process")
	exits := p.Exits()
	if len(exits) != 1 || !exits[0].Requested || exits[0].Crash() || p.Crashes() != 0 {
		t.Errorf("exits after Stop: %+v", exits)
	}
}

func TestHealthTimeoutNamesTheProcessAndKillsIt(t *testing.T) {
	s := newSupervisor(t, Config{})
	addr, _ := s.Addr("counter")
	spec := childSpec("counter", "-listen", addr, "-no-listen")
	spec.HealthTimeout = 500 * time.Millisecond
	p, err := s.Start(context.Background(), spec)
	if err == nil {
		t.Fatal("a process that never listens was reported healthy")
	}
	for _, want := range []string{"counter not healthy at http://" + addr + "/healthz after 500ms", "child: hello on stderr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if p.Running() {
		t.Error("still running after a failed health check")
	}
}

func TestExitBeforeHealthy(t *testing.T) {
	s := newSupervisor(t, Config{})
	_, err := s.Start(context.Background(), childSpec("origin", "-exit", "3"))
	if err == nil || !strings.Contains(err.Error(), "origin exited before it was healthy: exit status 3: child: bad flag --frobnicate") {
		t.Errorf("error = %v", err)
	}
}

// TestCrashDetectedAndRestarted kills the child with a real Go runtime fatal error and
// checks the supervisor records it as a crash with the runtime's message, restarts it
// on the same address, and does not restart one whose policy says never.
func TestCrashDetectedAndRestarted(t *testing.T) {
	onEvent, evs := events()
	s := newSupervisor(t, Config{OnEvent: onEvent, RestartBackoff: 50 * time.Millisecond})
	p := startChild(t, s, "counter", func(sp *Spec) { sp.Restart = RestartOnCrash })
	first := p.Pid()
	get(p.URL()+"/crash", 5*time.Second) // the process dies while answering

	crash := waitEvent(t, evs, "counter", EventCrashed)
	exits := p.Exits()
	if len(exits) != 1 {
		t.Fatalf("exits %+v", exits)
	}
	e := exits[0]
	if !e.Crash() || e.Code != 2 || e.Pid != first || !strings.HasPrefix(e.Fatal, "fatal error: concurrent map") {
		t.Errorf("exit %+v: want a crash, status 2, fatal error: concurrent map writes", e)
	}
	if !strings.Contains(crash.Detail, "fatal error: concurrent map") || !strings.Contains(crash.Detail, "restarting in 50ms") {
		t.Errorf("crash event %q", crash.Detail)
	}
	waitEvent(t, evs, "counter", EventRestarted)
	waitEvent(t, evs, "counter", EventReady)
	if got := getInt(t, p.URL()+"/pid"); got == first || got != p.Pid() {
		t.Errorf("after restart /pid = %d (first run %d, Pid() %d)", got, first, p.Pid())
	}
	if p.Crashes() != 1 || p.Runs() != 2 {
		t.Errorf("crashes %d runs %d, want 1 and 2", p.Crashes(), p.Runs())
	}

	// With the default policy the crash is recorded and the process stays down.
	q := startChild(t, s, "origin", nil)
	get(q.URL()+"/crash", 5*time.Second)
	<-q.Done()
	if q.Crashes() != 1 || q.Running() {
		t.Errorf("never-restart process: crashes %d running %v", q.Crashes(), q.Running())
	}
	if ev := s.Events(); len(ev) == 0 {
		t.Error("no events recorded")
	}
}

func TestFaultsOnAProcess(t *testing.T) {
	s := newSupervisor(t, Config{})
	p := startChild(t, s, "mirror-1", func(sp *Spec) { sp.Restart = RestartOnCrash })

	// Paused: the process holds its socket but answers nothing.
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if _, err := get(p.URL()+"/healthz", 300*time.Millisecond); err == nil {
		t.Error("a paused process answered")
	}
	if !p.Paused() {
		t.Error("Paused() = false")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := get(p.URL()+"/healthz", 10*time.Second); err != nil {
		t.Errorf("resumed process: %v", err)
	}

	// Restart: a new process on the same address.
	before := p.Pid()
	if err := p.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := getInt(t, p.URL()+"/pid"); after == before {
		t.Error("Restart kept the same process")
	}

	// Kill: recorded as requested, not a crash, and not restarted despite OnCrash.
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	exits := p.Exits()
	last := exits[len(exits)-1]
	if !last.Requested || last.Signal != "killed" || p.Crashes() != 0 {
		t.Errorf("after Kill: %+v, crashes %d", last, p.Crashes())
	}
	if p.Running() {
		t.Error("running after Kill")
	}
	if err := p.Pause(); err == nil {
		t.Error("Pause of a dead process succeeded")
	}
	// Start brings it back.
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := get(p.URL()+"/healthz", 10*time.Second); err != nil {
		t.Error(err)
	}
}

func TestStopEscalatesToKillAndReachesTheGroup(t *testing.T) {
	s := newSupervisor(t, Config{Grace: 300 * time.Millisecond})
	p := startChild(t, s, "origin", nil, "-ignore-term", "-fork")
	pid, grandchild := p.Pid(), getInt(t, p.URL()+"/grandchild")
	pids := map[int]string{pid: startTimeOf(pid), grandchild: startTimeOf(grandchild)}
	// Pausing first checks that Stop also gets a stopped process to exit.
	p.Pause()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	exits := p.Exits()
	if len(exits) != 1 || exits[0].Signal != "killed" {
		t.Errorf("exit %+v: want killed after the grace period", exits)
	}
	waitGone(t, pids, "process ignoring SIGTERM and its child")
}

func TestLimits(t *testing.T) {
	onEvent, evs := events()
	s := newSupervisor(t, Config{OnEvent: onEvent})
	p := startChild(t, s, "mirror-1", func(sp *Spec) { sp.Nofile = 1024; sp.GOMAXPROCS = 1 })
	soft, hard := nofileOf(t, p.Pid())
	if soft != "1024" || hard != "1024" {
		t.Errorf("Max open files %s/%s, want 1024/1024", soft, hard)
	}
	// The child sets GOMAXPROCS(4) after start in its handler setup; the environment is
	// what the supervisor controls, so read it from /proc.
	env, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/environ")
	if !strings.Contains(string(env), "\x00GOMAXPROCS=1\x00") && !strings.HasPrefix(string(env), "GOMAXPROCS=1\x00") {
		t.Error("GOMAXPROCS=1 not in the child's environment")
	}

	// Above the hard limit: lowered to it, with a note.
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	q := startChild(t, s, "mirror-2", func(sp *Spec) { sp.Nofile = lim.Max + 1000 })
	if _, hard := nofileOf(t, q.Pid()); hard != strconv.FormatUint(lim.Max, 10) || q.Nofile() != lim.Max {
		t.Errorf("hard limit %s (Nofile %d), want %d", hard, q.Nofile(), lim.Max)
	}
	note := waitEvent(t, evs, "mirror-2", EventNote)
	if !strings.Contains(note.Detail, "above this machine's hard limit") {
		t.Errorf("note %q", note.Detail)
	}
}

// nofileOf reads the soft and hard open-files limits of pid.
func nofileOf(t *testing.T, pid int) (string, string) {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "Max open files") {
			fl := strings.Fields(sc.Text())
			return fl[3], fl[4]
		}
	}
	t.Fatal("no open-files line in /proc/pid/limits")
	return "", ""
}

func TestCloseStopsEverything(t *testing.T) {
	s := newSupervisor(t, Config{Grace: time.Second})
	pids := map[int]string{}
	for _, name := range []string{"origin", "mirror-1", "counter"} {
		p := startChild(t, s, name, func(sp *Spec) { sp.Restart = RestartOnCrash }, "-fork")
		pids[p.Pid()] = startTimeOf(p.Pid())
		gc := getInt(t, p.URL()+"/grandchild")
		pids[gc] = startTimeOf(gc)
	}
	paused, _ := s.Process("mirror-1")
	paused.Pause()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pids, "after Close")
	for _, p := range s.Processes() {
		if p.Crashes() != 0 {
			t.Errorf("%s: Close counted as a crash", p.Name())
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Start(context.Background(), childSpec("late")); !errors.Is(err, errClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}

// TestNoChildSurvivesTheParent runs a parent process (this test binary) that starts
// two children, each with a child of its own, and then panics without Close, or is
// killed with SIGKILL: all four must die with it (the parent-death signal for the
// children, the watchdog for the grandchildren).
func TestNoChildSurvivesTheParent(t *testing.T) {
	for _, mode := range []string{"panic", "sigkill"} {
		t.Run(mode, func(t *testing.T) {
			exe, _ := os.Executable()
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), parentEnv+"="+mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = io.Discard
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "pids ") || len(strings.Fields(line)) != 5 {
				t.Fatalf("parent said %q, %v", line, err)
			}
			pids := map[int]string{}
			for _, f := range strings.Fields(line)[1:] {
				pid, _ := strconv.Atoi(f)
				pids[pid] = startTimeOf(pid)
				if !alive(pid, pids[pid]) {
					t.Fatalf("child %d not running before the parent died", pid)
				}
			}
			if mode == "sigkill" {
				cmd.Process.Kill()
			} else {
				io.WriteString(in, "die\n")
			}
			err = cmd.Wait()
			if err == nil {
				t.Fatal("parent exited cleanly")
			}
			waitGone(t, pids, "children of a parent that "+mode+"ed")
		})
	}
}

// TestRealCounterCrashLoop runs the real `stampede counter --store unsafe` under the
// supervisor with restart on crash, as systemd ran the story's counter, and hammers it
// with heartbeats until the Go runtime stops it: the crash is counted with the
// runtime's message, and the counter comes back on the same address.
func TestRealCounterCrashLoop(t *testing.T) {
	bin := testbin.Stampede(t)
	onEvent, evs := events()
	s := newSupervisor(t, Config{OnEvent: onEvent, RestartBackoff: 50 * time.Millisecond})
	addr, _ := s.Addr("counter")
	p, err := s.Start(context.Background(), Spec{
		Name: "counter", Path: bin, Health: "/healthz", Restart: RestartOnCrash, GOMAXPROCS: 4,
		Args: []string{"counter", "--listen", addr, "--store", "unsafe", "--expire", "200ms", "--sweep", "50ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(fmt.Sprintf("%s/api/viewers?id=w%d-%d", p.URL(), w, i))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	timeout := time.AfterFunc(40*time.Second, func() { close(stop) })
	crash := waitEvent(t, evs, "counter", EventCrashed)
	if timeout.Stop() {
		close(stop)
	}
	wg.Wait()
	if !strings.Contains(crash.Detail, "fatal error: concurrent map") {
		t.Errorf("crash recorded as %q, want the runtime's concurrent map message", crash.Detail)
	}
	waitEvent(t, evs, "counter", EventReady)
	if p.Crashes() < 1 || p.Runs() < 2 {
		t.Errorf("crashes %d runs %d", p.Crashes(), p.Runs())
	}
	if _, err := get(p.URL()+"/healthz", 10*time.Second); err != nil {
		t.Errorf("counter not back after its crash: %v", err)
	}
}

// TestPortTakenBeforeTheProcessBinds: the port reserved for a process is taken by
// another socket before the process binds it (seen once in CI); Start notices the
// "address already in use" death, reserves another address, rewrites the argument that
// named the old one and starts the process there.
func TestPortTakenBeforeTheProcessBinds(t *testing.T) {
	onEvent, evs := events()
	s := newSupervisor(t, Config{OnEvent: onEvent})
	addr, err := s.Addr("web")
	if err != nil {
		t.Fatal(err)
	}
	thief, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	p, err := s.Start(context.Background(), childSpec("web", "-listen", addr))
	if err != nil {
		t.Fatalf("Start did not recover from a taken port: %v", err)
	}
	if p.Addr() == addr {
		t.Fatalf("process still on the taken address %s", addr)
	}
	if got, err := get(p.URL()+"/healthz", 5*time.Second); err != nil || strings.TrimSpace(got) != "ok" {
		t.Fatalf("healthz on the new address: %q, %v", got, err)
	}
	if e := waitEvent(t, evs, "web", EventNote); !strings.Contains(e.Detail, "taken") {
		t.Fatalf("note %q does not say the port was taken", e.Detail)
	}
	if a, _ := s.Addr("web"); a != p.Addr() {
		t.Fatalf("supervisor reserves %s for web, process is on %s", a, p.Addr())
	}
}
