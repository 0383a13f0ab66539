package counter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// child is `stampede counter` running as a separate process (the real binary, built
// without -race, so the runtime's own concurrent-map check is what fires).
type child struct {
	cmd    *exec.Cmd
	addr   string        // host:port it listens on
	stderr *lockedBuffer // everything it wrote to stderr
	exited chan struct{} // closed when it has exited; then err is set
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listeningRE = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// startCounter runs `stampede counter --listen 127.0.0.1:0 args...` and waits for its
// `listening addr=` line. GOMAXPROCS=4 on this 2-core machine makes handlers run in
// parallel and get preempted mid-write, as they did on the real server.
func startCounter(t *testing.T, args ...string) *child {
	t.Helper()
	bin := testbin.Stampede(t)
	cmd := exec.Command(bin, append([]string{"counter", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=4")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 16<<20) // a fatal error dumps every goroutine
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(c.stderr, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		io.Copy(c.stderr, pipe)
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			cmd.Process.Kill()
			<-c.exited
		}
	})
	select {
	case c.addr = <-addrc:
	case <-c.exited:
		t.Fatalf("counter exited before listening: %v\n%s", c.err, c.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("counter did not report its address in 30 s:\n%s", c.stderr)
	}
	return c
}

// hammer sends heartbeats from workers goroutines, each on its own keep-alive
// connection (so the server runs one handler goroutine per worker), with a fresh ?id=
// per request: every heartbeat inserts into the map, and (with a short expiry) the
// sweeper deletes from it at the same time. Each worker sends perWorker requests, or
// runs until stop is closed when perWorker is 0. It returns the requests answered 200.
func hammer(c *child, workers, perWorker int, stop <-chan struct{}) int {
	var wg sync.WaitGroup
	var mu sync.Mutex // protects ok
	ok := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := 0; perWorker == 0 || i < perWorker; i++ {
				select {
				case <-stop:
					return
				case <-c.exited:
					return
				default:
				}
				resp, err := client.Get(fmt.Sprintf("http://%s/api/viewers?id=w%d-%d", c.addr, w, i))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	return ok
}

// TestUnsafeStoreCrashes reproduces the original outage: the unsafe store, hammered by
// concurrent heartbeats while its sweeper deletes, dies with the runtime's
// `fatal error: concurrent map writes`. The runtime's check is best effort (it catches a
// collision only when it happens to see one), so the test retries a bounded number of
// times; it has never needed more than one attempt here.
func TestUnsafeStoreCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	const attempts = 5
	var last string
	for i := 1; i <= attempts; i++ {
		c := startCounter(t, "--store", "unsafe", "--expire", "200ms", "--sweep", "50ms")
		stop := make(chan struct{})
		timer := time.AfterFunc(20*time.Second, func() { close(stop) })
		hammer(c, 32, 0, stop)
		timer.Stop()
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
			last = "survived 20 s of load"
			t.Logf("attempt %d: %s", i, last)
			continue
		}
		out := c.stderr.String()
		var ee *exec.ExitError
		if strings.Contains(out, "fatal error: concurrent map writes") && errors.As(c.err, &ee) && ee.ExitCode() == 2 {
			t.Logf("attempt %d: died as the original did (%v), caught in %s", i, c.err, catcher(out))
			return
		}
		last = firstLines(out, "fatal error", 3)
		t.Logf("attempt %d: exited (%v) without the expected error: %s", i, c.err, last)
	}
	t.Fatalf("unsafe store never died of concurrent map writes in %d attempts; last: %s", attempts, last)
}

// TestUnsafeSweeperRacesHandler shows the sweeper is a concurrent writer on its own:
// one client on one connection means one handler at a time, so when the process dies
// the other party can only be the sweeper deleting while that handler writes. The
// runtime reports such a collision as "concurrent map writes" or, when the sweeper's
// range loop is the one that notices, "concurrent map iteration and map write"; both
// are the original bug.
func TestUnsafeSweeperRacesHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	c := startCounter(t, "--store", "unsafe", "--expire", "250ms", "--sweep", "1ms")
	start := time.Now()
	stop := make(chan struct{})
	timer := time.AfterFunc(40*time.Second, func() { close(stop) })
	n := hammer(c, 1, 0, stop)
	timer.Stop()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("one handler and the sweeper: still alive after %d heartbeats in %v", n, time.Since(start).Round(time.Millisecond))
	}
	out := c.stderr.String()
	if !strings.Contains(out, "fatal error: concurrent map") {
		t.Fatalf("exited (%v) but not of a concurrent map access: %s", c.err, firstLines(out, "fatal error", 3))
	}
	t.Logf("died after %d sequential heartbeats in %v: %s, caught in %s", n, time.Since(start).Round(time.Millisecond),
		firstLines(out, "fatal error", 1), catcher(out))
}

// TestLockedStoresSurvive: the same load against the fixed stores leaves the process
// running and the count exact (every id is distinct and nothing expires).
func TestLockedStoresSurvive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	const workers, perWorker = 32, 250
	for _, store := range []string{StoreMutex, StoreSharded} {
		t.Run(store, func(t *testing.T) {
			// A 5 ms sweep keeps the sweeper scanning while the handlers write.
			c := startCounter(t, "--store", store, "--expire", "10m", "--sweep", "5ms")
			if ok := hammer(c, workers, perWorker, nil); ok != workers*perWorker {
				t.Fatalf("%d of %d heartbeats answered 200\n%s", ok, workers*perWorker, c.stderr)
			}
			select {
			case <-c.exited:
				t.Fatalf("counter died: %v\n%s", c.err, firstLines(c.stderr.String(), "fatal error", 3))
			default:
			}
			resp, err := http.Get("http://" + c.addr + "/api/viewers?id=w0-0") // an existing viewer
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Viewers int }
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || body.Viewers != workers*perWorker {
				t.Fatalf("count %d (%v), want %d", body.Viewers, err, workers*perWorker)
			}
			if n := scrape(t, c.addr, `stampede_counter_heartbeats_total{result="new"}`); n != workers*perWorker {
				t.Errorf("new heartbeats metric %d, want %d", n, workers*perWorker)
			}
		})
	}
}

// scrape reads one sample from the child's /metrics.
func scrape(t *testing.T, addr, series string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return int(f)
		}
	}
	t.Fatalf("%s not in /metrics", series)
	return 0
}

// TestCounterCommandFlags: bad flags of `counter` and `counter-load` exit 2 and name
// the flag, before anything listens or is sent.
func TestCounterCommandFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	bin := testbin.Stampede(t)
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--store", "bogus"}, "--store"},                           // unknown store
		{[]string{"--expire", "0s"}, "--expire"},                            // zero expiry
		{[]string{"--sweep", "-1s"}, "--sweep"},                             // negative sweep
		{[]string{"--trusted-proxies", "10.0.0.0/99"}, "--trusted-proxies"}, // bad CIDR
		{[]string{"--max-viewers", "0"}, "--max-viewers"},                   // zero cap
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, append([]string{"counter", "--listen", "127.0.0.1:0"}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.flag) {
			t.Errorf("counter %v: %v, output %q; want exit 2 naming %s", tc.args, err, out, tc.flag)
		}
		if strings.Contains(string(out), "listening") {
			t.Errorf("counter %v listened before rejecting its flags", tc.args)
		}
	}
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--url", "http://192.0.2.1/api/viewers"}, "--url"},     // source addresses need a loopback target
		{[]string{"--rate", "0"}, "--rate"},                              // no rate
		{[]string{"--first-source", "10.0.0.1"}, "--first-source"},       // not loopback
		{[]string{"--sources", "20000000"}, "--sources"},                 // more than 127/8 holds
		{[]string{"--workers", "10", "--max-workers", "5"}, "--workers"}, // inverted bounds
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, append([]string{"counter-load", "--duration", "1s"}, tc.args...)...).CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.flag) {
			t.Errorf("counter-load %v: %v, output %q; want exit 2 naming %s", tc.args, err, out, tc.flag)
		}
	}
}

// catcher names the store method on the crashing goroutine's stack (the runtime prints
// that goroutine first): Heartbeat (two handlers) or Sweep (the sweeper against one).
func catcher(stderr string) string {
	i := strings.Index(stderr, "fatal error:")
	if i < 0 {
		return "?"
	}
	trace := stderr[i:]
	if first := strings.Index(trace, "\ngoroutine "); first > 0 { // the crashing goroutine's trace runs to the next one
		if end := strings.Index(trace[first+1:], "\ngoroutine "); end > 0 {
			trace = trace[:first+1+end]
		}
	}
	for _, fn := range []string{"(*UnsafeStore).Heartbeat", "(*UnsafeStore).Sweep"} {
		if strings.Contains(trace, fn) {
			return fn
		}
	}
	return "?"
}

// firstLines returns n lines of s starting at the first that contains marker (or the
// start), to keep failure messages short.
func firstLines(s, marker string, n int) string {
	if i := strings.Index(s, marker); i >= 0 {
		s = s[i:]
	}
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}
