package nginx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-live/stampede/servers/origin"
)

// startNginx starts a mirror or fails the test, naming the package when nginx is missing.
func startNginx(t *testing.T, tn Tuning, upstream string) *Mirror {
	t.Helper()
	m, err := Start(context.Background(), tn, upstream)
	if errors.Is(err, ErrNotInstalled) {
		t.Fatalf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return m
}

// counting is an upstream that counts requests per path.
type counting struct {
	*httptest.Server
	mu sync.Mutex // protects n
	n  map[string]int
}

func newCounting(t *testing.T, h http.HandlerFunc) *counting {
	c := &counting{n: map[string]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.URL.Path]++
		c.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *counting) count(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[p]
}

func TestRenderedTuningsPassNginxSyntaxCheck(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(DefaultBinary); err != nil {
		t.Fatal(ErrNotInstalled)
	}
	for _, tc := range []struct {
		name string
		t    Tuning
	}{
		{"defaults", Tuning{}}, // stock nginx with the relay's cache rules
		{"everything", Tuning{Name: "all", WorkerProcesses: 2, WorkerConnections: 16384, WorkerRlimitNofile: 20000,
			PlaylistValid: 2 * time.Second, SegmentValid: time.Hour, NegativeValid: time.Second,
			CacheLock: true, CacheLockTimeout: 2 * time.Second, CacheLockAge: 3 * time.Second,
			UseStale: []string{"error", "timeout", "updating", "http_500"}, UpstreamKeepalive: 32,
			AccessLog: true, HonorCacheControl: true, Backlog: 4096, ProxyConnectTimeout: 250 * time.Millisecond,
			ProxyReadTimeout: 5 * time.Second, KeepaliveRequests: 100000, WorkerCPUAffinity: "01 10"}}, // every knob set
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			conf, err := Render(tc.t, "http://127.0.0.1:9", "127.0.0.1:1", dir) // -t does not bind
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"tmp", "cache"} {
				os.MkdirAll(filepath.Join(dir, d), 0o700)
			}
			path := filepath.Join(dir, "nginx.conf")
			os.WriteFile(path, []byte(conf), 0o600)
			out, err := exec.Command(DefaultBinary, "-t", "-p", dir+"/", "-c", path, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
			if err != nil {
				t.Fatalf("nginx -t rejected the rendered config: %v\n%s\n%s", err, out, conf)
			}
		})
	}
}

func TestRenderRejectsBadTunings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		t     Tuning
		field string
	}{
		{Tuning{WorkerProcesses: -1}, "WorkerProcesses"},
		{Tuning{WorkerRlimitNofile: -5}, "WorkerRlimitNofile"},
		{Tuning{UseStale: []string{"sometimes"}}, "UseStale"},
		{Tuning{PlaylistValid: 1500 * time.Millisecond}, "PlaylistValid"},       // proxy_cache_valid is in seconds
		{Tuning{ProxyReadTimeout: 1500 * time.Microsecond}, "ProxyReadTimeout"}, // nginx has no µs
		{Tuning{CacheMaxSize: 10}, "CacheMaxSize"},
		{Tuning{Name: "a\nb"}, "Name"},                                // would break out of the comment line
		{Tuning{WorkerCPUAffinity: "1; user x"}, "WorkerCPUAffinity"}, // directive injection
	} {
		if _, err := Render(tc.t, "http://127.0.0.1:1", "127.0.0.1:2", "/tmp/x"); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Render(%+v) = %v, want an error naming %s", tc.t, err, tc.field)
		}
	}
	if _, err := Render(Tuning{}, "ftp://x", "127.0.0.1:2", "/tmp/x"); err == nil {
		t.Error("accepted an ftp upstream")
	}
	if _, err := Render(Tuning{}, "http://x:1", "127.0.0.1:2", "/tmp/a;b"); err == nil {
		t.Error("accepted a prefix that would inject a directive")
	}
}

func TestStartMissingBinaryFailsClearly(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), Tuning{Binary: "/nonexistent/nginx"}, "http://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/nginx") {
		t.Fatalf("err = %v", err)
	}
}

func TestMirrorsTheRealOrigin(t *testing.T) {
	t.Parallel()
	o, err := origin.New(origin.Config{SegmentDuration: time.Second, Window: 4,
		Epoch: time.Now().Add(-10 * time.Second).Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	up := httptest.NewServer(o.Handler())
	t.Cleanup(up.Close)
	m := startNginx(t, Tuning{Name: "relay"}, up.URL)

	fetch := func(base, path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s%s: %s", base, path, resp.Status)
		}
		return resp, b
	}
	_, master := fetch(m.URL(), "/live/master.m3u8")
	rendition := ""
	for _, l := range strings.Split(string(master), "\n") {
		if strings.HasSuffix(l, ".m3u8") {
			rendition = l
			break
		}
	}
	if rendition == "" {
		t.Fatalf("no media playlist in the master playlist:\n%s", master)
	}
	media := "/live/" + strings.TrimPrefix(rendition, "/live/")
	_, pl := fetch(m.URL(), media)
	seg := ""
	for _, l := range strings.Split(string(pl), "\n") {
		if strings.HasSuffix(l, ".ts") {
			seg = l
		}
	}
	if seg == "" {
		t.Fatalf("no segment in %s:\n%s", media, pl)
	}
	segPath := media[:strings.LastIndexByte(media, '/')+1] + seg
	if strings.HasPrefix(seg, "/") {
		segPath = seg
	}
	r1, viaNginx := fetch(m.URL(), segPath)
	r2, again := fetch(m.URL(), segPath)
	_, direct := fetch(up.URL, segPath)
	if string(viaNginx) != string(direct) || string(again) != string(direct) {
		t.Fatalf("segment through nginx differs from the origin's (%d vs %d bytes)", len(viaNginx), len(direct))
	}
	if r1.Header.Get("X-Cache") != "MISS" || r2.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("X-Cache %s then %s, want MISS then HIT", r1.Header.Get("X-Cache"), r2.Header.Get("X-Cache"))
	}
	st, err := m.StubStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Active < 1 || st.Requests < 5 {
		t.Fatalf("stub_status %+v: want at least the scraping connection and the requests made", st)
	}
	if n, err := m.OpenFDs(); err != nil || n < 5 {
		t.Fatalf("OpenFDs = %d, %v", n, err)
	}
}

// holdConns opens n connections to addr and keeps them open until the test ends. A
// connection nginx cannot take is closed by it; that is the point.
func holdConns(t *testing.T, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /live/1.ts HTTP/1.1\r\nHost: x\r\n\r\n")
		go func() { io.Copy(io.Discard, c) }()
	}
}

func TestErrorLogClasses(t *testing.T) {
	t.Parallel()
	up := newCounting(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "slow.ts") {
			<-r.Context().Done() // never answers: nginx's read timeout fires
			return
		}
		w.Write([]byte("seg"))
	})
	for _, tc := range []struct {
		name  string
		t     Tuning
		load  func(t *testing.T, m *Mirror)
		class func(ErrorCounts) int
	}{
		// the relay's first nginx failure: more connections than worker_connections
		{"worker_connections", Tuning{WorkerConnections: 16},
			func(t *testing.T, m *Mirror) { holdConns(t, m.Addr(), 40) },
			func(c ErrorCounts) int { return c.WorkerConnections }},
		// the second: descriptors run out before worker_connections does
		{"too many open files", Tuning{WorkerConnections: 1024, WorkerRlimitNofile: 32},
			func(t *testing.T, m *Mirror) { holdConns(t, m.Addr(), 60) },
			func(c ErrorCounts) int { return c.TooManyOpenFiles }},
		// a late upstream
		{"upstream timed out", Tuning{ProxyReadTimeout: 200 * time.Millisecond},
			func(t *testing.T, m *Mirror) {
				resp, err := http.Get(m.URL() + "/live/slow.ts")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusGatewayTimeout {
					t.Fatalf("slow upstream: %s, want 504", resp.Status)
				}
			},
			func(c ErrorCounts) int { return c.UpstreamTimedOut }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := startNginx(t, tc.t, up.URL)
			tc.load(t, m)
			deadline := time.Now().Add(30 * time.Second)
			for {
				c, err := m.ErrorCounts()
				if err != nil {
					t.Fatal(err)
				}
				if tc.class(c) > 0 {
					return
				}
				if time.Now().After(deadline) {
					log, _ := os.ReadFile(filepath.Join(m.Prefix(), "error.log"))
					t.Fatalf("no %s line counted: %+v\n%s", tc.name, c, log)
				}
				time.Sleep(20 * time.Millisecond) // polling the log with a deadline
			}
		})
	}
}

func TestCacheLockCoalescesAFlashCrowd(t *testing.T) {
	t.Parallel()
	var release = make(chan struct{})
	var first atomic.Bool
	up := newCounting(t, func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			<-release // hold the first fetch until every client is waiting
		}
		w.Write([]byte(strings.Repeat("s", 10000)))
	})
	m := startNginx(t, Tuning{CacheLock: true, WorkerConnections: 1024}, up.URL)
	const crowd = 50
	done := make(chan int, crowd)
	for range crowd {
		go func() {
			resp, err := http.Get(m.URL() + "/live/new.ts")
			if err != nil {
				done <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := m.StubStatus(context.Background())
		if err == nil && st.Active >= crowd+1 { // the crowd plus this scrape
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the crowd never connected: %+v %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	for range crowd {
		if st := <-done; st != 200 {
			t.Fatalf("a client got %d", st)
		}
	}
	if n := up.count("/live/new.ts"); n != 1 {
		t.Fatalf("proxy_cache_lock on: %d upstream requests for %d clients, want 1", n, crowd)
	}
}

func TestParseStubStatus(t *testing.T) {
	t.Parallel()
	st, err := ParseStubStatus("Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n")
	if err != nil || st != (StubStatus{291, 16630948, 16630948, 31070465, 6, 179, 106}) {
		t.Fatalf("%+v %v", st, err)
	}
	for _, bad := range []string{"", "Active connections: x\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 0 Waiting: 0",
		"<html>404</html>", "Active connections: 1\nserver accepts handled requests\n 1 1\nReading: 0 Writing: 0 Waiting: 0"} {
		if _, err := ParseStubStatus(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseStubStatus(f *testing.F) {
	f.Add("Active connections: 2 \nserver accepts handled requests\n 10 10 25 \nReading: 0 Writing: 1 Waiting: 1 \n")
	f.Add("Active connections: -1\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 0 Waiting: 0")
	f.Add("\n\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseStubStatus(s)
		if err == nil && (st.Active < 0 || st.Requests < 0 || st.Waiting < 0) {
			t.Fatalf("negative counts from %q: %+v", s, st)
		}
	})
}

func FuzzClassifyErrorLine(f *testing.F) {
	for _, s := range []string{
		"2026/01/01 10:00:00 [alert] 12#12: 16 worker_connections are not enough",
		"2026/01/01 10:00:00 [crit] 12#12: accept4() failed (24: Too many open files)",
		"2026/01/01 10:00:00 [error] 12#12: *5 upstream timed out (110: Connection timed out) while reading response header from upstream",
		"2026/01/01 10:00:00 [warn] 12#12: an upstream response is buffered to a temporary file",
		"2026/01/01 10:00:00 [error] 12#12: *1 connect() failed (111: Connection refused)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var c ErrorCounts
		c.add(ClassifyErrorLine(line))
		if n := c.WorkerConnections + c.TooManyOpenFiles + c.UpstreamTimedOut + c.Other; n > 1 {
			t.Fatalf("one line counted %d times", n)
		}
	})
}

func TestErrorCountsReadsIncrementally(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := &Mirror{prefix: dir}
	log := filepath.Join(dir, "error.log")
	write := func(s string) {
		f, _ := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		f.WriteString(s)
		f.Close()
	}
	write("x [alert] 16 worker_connections are not enough\nx [crit] accept4() failed (24: Too many open")
	c, _ := m.ErrorCounts()
	if c.WorkerConnections != 1 || c.TooManyOpenFiles != 0 {
		t.Fatalf("after a partial line: %+v", c) // the partial line waits for its end
	}
	write(" files)\nx [warn] something\nx [error] upstream timed out (110)\n")
	c, _ = m.ErrorCounts()
	if c != (ErrorCounts{WorkerConnections: 1, TooManyOpenFiles: 1, UpstreamTimedOut: 1}) {
		t.Fatalf("%+v", c)
	}
}
