package local

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

// The test binary doubles as the child and parent programs the tests supervise, chosen
// by an environment variable, so no helper needs building.
const (
	childEnv  = "STAMPEDE_LOCAL_TEST_CHILD"  // run childMain
	parentEnv = "STAMPEDE_LOCAL_TEST_PARENT" // run parentMain
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(childEnv) != "":
		childMain(os.Args[1:])
		return
	case os.Getenv(parentEnv) != "":
		parentMain(os.Getenv(parentEnv))
		return
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// childSpec runs the child program with args.
func childSpec(name string, args ...string) Spec {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return Spec{Name: name, Path: exe, Args: args, Env: []string{childEnv + "=1"}, Health: "/healthz"}
}

// childMain is a small server: /healthz answers, /crash dies of concurrent map writes
// (the runtime's own fatal error), /pid and /limits report on the process, /grandchild
// reports the pid of a process it started. Flags change its behaviour at start.
func childMain(args []string) {
	fs := flag.NewFlagSet("child", flag.ExitOnError)
	listen := fs.String("listen", "", "address")
	noListen := fs.Bool("no-listen", false, "run without ever listening")
	ignoreTerm := fs.Bool("ignore-term", false, "ignore SIGTERM")
	fork := fs.Bool("fork", false, "start a grandchild that sleeps")
	exitCode := fs.Int("exit", -1, "print a message and exit with this code at once")
	fs.Parse(args)

	fmt.Println("child: hello on stdout")
	fmt.Fprintln(os.Stderr, "child: hello on stderr")
	if *exitCode >= 0 {
		fmt.Fprintln(os.Stderr, "child: bad flag --frobnicate")
		os.Exit(*exitCode)
	}
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	grandchild := 0
	if *fork {
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "child: fork:", err)
			os.Exit(1)
		}
		grandchild = cmd.Process.Pid
	}
	if *noListen {
		select {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, os.Getpid()) })
	mux.HandleFunc("/grandchild", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, grandchild) })
	mux.HandleFunc("/gomaxprocs", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, runtime.GOMAXPROCS(0)) })
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "child: about to race on a map")
		m := map[int]int{}
		for g := 0; g < 4; g++ {
			go func() {
				for i := 0; ; i++ {
					m[i%1024] = i // no lock: the runtime stops the process
				}
			}()
		}
		select {}
	})
	runtime.GOMAXPROCS(4)
	if err := http.ListenAndServe(*listen, mux); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
}

// parentMain starts a supervisor with two children (each with a grandchild), prints
// their pids, and then dies the way mode says: "panic" panics in a goroutine, "hang"
// waits to be killed.
func parentMain(mode string) {
	dir, _ := os.MkdirTemp("", "stampede-local-parent-")
	s, err := New(Config{LogDir: dir, Subnet: "127.0.78", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	var pids []string
	for _, name := range []string{"a", "b"} {
		spec := childSpec(name)
		addr, _ := s.Addr(name)
		spec.Args = []string{"-listen", addr, "-fork"}
		p, err := s.Start(context.Background(), spec)
		if err != nil {
			panic(err)
		}
		gc, err := get(p.URL()+"/grandchild", 10*time.Second)
		if err != nil {
			panic(err)
		}
		pids = append(pids, strconv.Itoa(p.Pid()), gc)
	}
	fmt.Println("pids", strings.Join(pids, " "))
	os.Stdout.Sync()
	// Die only when the test has seen everything running (a line on stdin).
	bufio.NewReader(os.Stdin).ReadString('\n')
	switch mode {
	case "panic":
		done := make(chan struct{})
		go func() { panic("parent dies without calling Close") }()
		<-done
	default:
		select {}
	}
}

// alive reports whether pid still runs as the process that started at startTime
// (field 22 of /proc/pid/stat), so a recycled pid does not count. A zombie is dead.
func alive(pid int, startTime string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	return startTime == "" || f[19] == startTime
}

func startTimeOf(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// waitGone polls until none of pids is alive, failing after a generous deadline.
func waitGone(t *testing.T, pids map[int]string, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []int
		for pid, st := range pids {
			if alive(pid, st) {
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
			t.Fatalf("%s: processes %v survived", what, left)
		}
		time.Sleep(20 * time.Millisecond) // polling a process table, not synchronising
	}
}

// get fetches url with a short timeout and returns the body.
func get(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.StatusCode != 200 {
		return b.String(), fmt.Errorf("status %d", resp.StatusCode)
	}
	return b.String(), nil
}

func getInt(t *testing.T, url string) int {
	t.Helper()
	s, err := get(url, 10*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("GET %s: %q", url, s)
	}
	return n
}

// freeSubnet hands each test its own /24 of loopback so parallel supervisors never
// share an address.
var subnetSeq = make(chan int, 1)

func init() { subnetSeq <- 80 }

func newSupervisor(t *testing.T, cfg Config) *Supervisor {
	t.Helper()
	n := <-subnetSeq
	subnetSeq <- n + 1
	if cfg.LogDir == "" {
		cfg.LogDir = t.TempDir()
	}
	if cfg.Subnet == "" {
		cfg.Subnet = "127.0." + strconv.Itoa(n)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startChild starts the child program under s with -listen set to its address.
func startChild(t *testing.T, s *Supervisor, name string, mutate func(*Spec), args ...string) *Process {
	t.Helper()
	addr, err := s.Addr(name)
	if err != nil {
		t.Fatal(err)
	}
	spec := childSpec(name, append([]string{"-listen", addr}, args...)...)
	if mutate != nil {
		mutate(&spec)
	}
	p, err := s.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// events returns a Config.OnEvent that forwards events into a channel.
func events() (func(Event), <-chan Event) {
	ch := make(chan Event, 1000)
	return func(e Event) {
		select {
		case ch <- e:
		default:
		}
	}, ch
}

// waitEvent waits for an event of kind for process name.
func waitEvent(t *testing.T, ch <-chan Event, name string, kind EventKind) Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-ch:
			if e.Process == name && e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event for %s", kind, name)
		}
	}
}
