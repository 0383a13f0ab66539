package mirror

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

// child is `stampede mirror` running as a child process.
type child struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex // protects stderr
	stderr strings.Builder
	exited chan struct{}
}

func (c *child) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	bin := testbin.Stampede(t)
	c := &child{exited: make(chan struct{})}
	c.cmd = exec.Command(bin, append([]string{"mirror", "--listen", "127.0.0.1:0"}, args...)...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	pipe, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.stderr.WriteString(line + "\n")
			c.mu.Unlock()
			if _, rest, ok := strings.Cut(line, "msg=listening "); ok {
				_, rest, _ = strings.Cut(rest, "addr=")
				addr, _, _ := strings.Cut(rest, " ")
				select {
				case addrc <- addr:
				default:
				}
			}
		}
		c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
		}
	})
	select {
	case c.addr = <-addrc:
	case <-c.exited:
		t.Fatalf("mirror exited at start:\n%s", c.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("mirror did not start:\n%s", c.log())
	}
	return c
}

// scraper keeps one keep-alive connection to read /metrics: when descriptors run out, a
// new connection could not be accepted, but this one is already open.
type scraper struct {
	c  net.Conn
	br *bufio.Reader
}

func (s *scraper) get(t *testing.T, path string) (int, string) {
	t.Helper()
	_ = s.c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(s.c, "GET %s HTTP/1.1\r\nHost: mirror\r\n\r\n", path)
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		t.Fatalf("scrape %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func (s *scraper) raw(t *testing.T) string {
	_, body := s.get(t, "/metrics")
	return body
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (s *scraper) metrics(t *testing.T) map[string]float64 {
	_, body := s.get(t, "/metrics")
	return parseExposition(t, bufio.NewScanner(strings.NewReader(body)))
}

func TestFDExhaustion(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".ts") {
			w.Header().Set("Connection", "close") // every segment fetch needs a new dial
		}
		w.Write(segment(2000))
	})
	const limit = 256
	m := startChild(t, "--upstream", up.URL, "--nofile", fmt.Sprint(limit), "--playlist-ttl", "1h", "--debug")
	sc, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	scr := &scraper{sc, bufio.NewReader(sc)}
	if st, _ := scr.get(t, "/live/index.m3u8"); st != 200 { // warm: hits need no descriptor
		t.Fatalf("warm-up: %d", st)
	}

	// Open far more connections than the mirror has descriptors, each with a request in
	// flight: cached playlists, and segments that need a new upstream connection.
	const conns = 2 * limit
	t0 := time.Now()
	type outcome struct {
		status int
		err    error
	}
	results := make(chan outcome, conns)
	clients := make([]net.Conn, 0, conns)
	for i := range conns {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		clients = append(clients, c)
		path := "/live/index.m3u8"
		if i%4 == 0 {
			path = fmt.Sprintf("/live/%d.ts", i)
		}
		go func() {
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: mirror\r\n\r\n", path)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				results <- outcome{err: err}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- outcome{status: resp.StatusCode}
		}()
	}
	// No wedge: every client gets an answer (or a clean close) well before its deadline.
	counts := map[string]int{}
	for range conns {
		o := <-results
		switch {
		case o.err != nil:
			if ne, ok := o.err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("a client got no answer within 60 s: the mirror wedged\n%s\n...\n%s", head(m.log()), tail(m.log()))
			}
			counts["closed"]++
		default:
			counts[fmt.Sprint(o.status)]++
		}
	}
	t.Logf("%v: storm answered", time.Since(t0))
	t.Logf("outcomes with %d connections against nofile %d: %v", conns, limit, counts)
	if counts["200"] == 0 || counts["503"] == 0 {
		t.Fatalf("want some 200s (served) and some 503s (shed), got %v", counts)
	}
	// Fill the descriptors again, then ask for a segment that needs a new upstream
	// connection on the scraping connection: the dial runs out of descriptors too.
	extra := make(chan int, 64)
	for range cap(extra) {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		go func() {
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(c, "GET /live/index.m3u8 HTTP/1.1\r\nHost: mirror\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				extra <- 0
				return
			}
			resp.Body.Close()
			extra <- resp.StatusCode
		}()
	}
	for range cap(extra) {
		<-extra
	}
	t.Logf("%v: refilled", time.Since(t0))
	if st, _ := scr.get(t, "/live/needs-a-dial.ts"); st != http.StatusServiceUnavailable {
		t.Fatalf("segment fetch with no descriptor free: %d, want 503", st)
	}
	if raw := scr.raw(t); !strings.Contains(raw, `stampede_mirror_emfile_total{op="dial"} `) ||
		strings.Contains(raw, `stampede_mirror_emfile_total{op="dial"} 0`+"\n") {
		t.Fatalf("no EMFILE counted on upstream dial:\n%s", grepLines(raw, "emfile"))
	}
	met := scr.metrics(t)
	if met[metricEMFILE] == 0 || met[metricShed] == 0 {
		t.Fatalf("emfile_total=%v shed_total=%v: EMFILE not counted", met[metricEMFILE], met[metricShed])
	}
	if met[metricMaxFDs] != limit {
		t.Fatalf("max_fds = %v, want %d", met[metricMaxFDs], limit)
	}
	if !strings.Contains(m.log(), "out of file descriptors") {
		t.Fatalf("no EMFILE log line:\n%s", tail(m.log()))
	}
	if n := strings.Count(m.log(), "out of file descriptors accepting"); n > 30 {
		t.Fatalf("%d EMFILE log lines: not rate-limited", n)
	}

	// Once the connections close, it serves normally again, by itself.
	for _, c := range clients {
		c.Close()
	}
	waitFor(t, "recovery", 60*time.Second, func() bool {
		for i, p := range []string{"/live/index.m3u8", "/live/recover.ts"} {
			c, err := net.DialTimeout("tcp", m.addr, 5*time.Second)
			if err != nil {
				return false
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET %s?%d HTTP/1.1\r\nHost: mirror\r\n\r\n", p, i)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err != nil || resp.StatusCode != 200 {
				return false
			}
		}
		return true
	})
	t.Logf("%v: recovered", time.Since(t0))
	if st, _ := scr.get(t, "/healthz"); st != 200 {
		t.Fatalf("healthz after recovery: %d", st)
	}
	select {
	case <-m.exited:
		t.Fatalf("the mirror exited:\n%s", tail(m.log()))
	default:
	}
	// And it still shuts down cleanly.
	m.cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-m.exited:
		if code := m.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit code %d:\n%s", code, tail(m.log()))
		}
	case <-ctx.Done():
		t.Fatal("no clean shutdown")
	}
}

func head(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[:min(len(lines), 60)], "\n")
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
