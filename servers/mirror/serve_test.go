package mirror

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRefusesToBeAnOpenProxy(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Host))
	})
	s, base := startMirror(t, Config{Upstream: up.URL})
	addr := strings.TrimPrefix(base, "http://")
	for _, tc := range []struct {
		name, raw string
		want      int
	}{
		// absolute-form target: the classic open-proxy request
		{"absolute URI", "GET http://example.com/live/1.ts HTTP/1.1\r\nHost: example.com\r\n\r\n", http.StatusForbidden},
		// absolute-form naming the upstream itself is refused too: only origin-form is served
		{"absolute URI to upstream", "GET " + up.URL + "/x.ts HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusForbidden},
		// tunnelling
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", http.StatusMethodNotAllowed},
		// methods that could change state upstream
		{"POST", "POST /live/1.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", http.StatusMethodNotAllowed},
		{"DELETE", "DELETE /live/1.ts HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusMethodNotAllowed},
		// path tricks
		{"dot-dot", "GET /live/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"encoded dot-dot", "GET /live/%2e%2e/secret.ts HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"authority-looking path", "GET //example.com/x.ts HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"backslash", "GET /live/..%5c..%5cx.ts HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"NUL", "GET /live/a%00.ts HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		// asterisk-form
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusMethodNotAllowed},
	} {
		if got := rawRequest(t, addr, tc.raw); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if n := up.total(); n != 0 {
		t.Fatalf("the upstream saw %d refused requests", n)
	}
	// A Host header naming another site changes nothing: the request goes to the upstream.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /live/1.ts HTTP/1.1\r\nHost: example.com\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != strings.TrimPrefix(up.URL, "http://") {
		t.Fatalf("Host: example.com reached %q, want the upstream's own host", body)
	}
	if v := value(s.m.rejected.WithLabelValues(rejectNotProxy)); v != 2 {
		t.Fatalf("not_proxy rejections %v, want 2", v)
	}
}

func TestSlowlorisIsCutOff(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	s, base := startMirror(t, Config{Upstream: up.URL, ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Half a request, then nothing: the server must hang up, not wait forever.
	io.WriteString(c, "GET /live/1.ts HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("still open after %v: the slowloris was not cut off", time.Since(start))
	}
	waitFor(t, "the connection to be counted closed", 20*time.Second, func() bool {
		return value(s.m.clientConns) == 0
	})
}

// openKeepAlive opens a connection, does one request on it, and leaves it open.
func openKeepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	return c, br, roundTrip(t, c, br, "/live/1.ts")
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, path string) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	return resp.StatusCode
}

func TestMaxConnsShed(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("seg")) })
	s, base := startMirror(t, Config{Upstream: up.URL, MaxConns: 2})
	addr := strings.TrimPrefix(base, "http://")
	c1, _, st1 := openKeepAlive(t, addr)
	_, _, st2 := openKeepAlive(t, addr)
	if st1 != 200 || st2 != 200 {
		t.Fatalf("first two connections: %d %d", st1, st2)
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if st := roundTrip(t, c3, bufio.NewReader(c3), "/live/1.ts"); st != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %d, want 503", st)
	}
	if v := value(s.m.shed.WithLabelValues(shedMaxConns)); v != 1 {
		t.Fatalf("shed = %v, want 1", v)
	}
	c1.Close()
	waitFor(t, "a slot to free", 20*time.Second, func() bool { return value(s.m.clientConns) == 1 })
	_, _, st4 := openKeepAlive(t, addr)
	if st4 != 200 {
		t.Fatalf("after a connection closed: %d, want 200", st4)
	}
}

func TestMaxConnsQueue(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("seg")) })
	s, base := startMirror(t, Config{Upstream: up.URL, MaxConns: 1, Overload: OverloadQueue})
	addr := strings.TrimPrefix(base, "http://")
	c1, _, st1 := openKeepAlive(t, addr)
	if st1 != 200 {
		t.Fatalf("first connection: %d", st1)
	}
	c2, err := net.Dial("tcp", addr) // the kernel completes it; the mirror does not accept it yet
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET /live/1.ts HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the acceptor to queue", 20*time.Second, func() bool { return value(s.m.queued) == 1 })
	_ = c2.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := c2.Read(make([]byte, 1)); n != 0 {
		t.Fatal("the queued connection was answered while the slot was taken")
	}
	c1.Close()
	_ = c2.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("queued connection after the slot freed: %v %v", resp, err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{}, "Upstream"},                          // required
		{Config{Upstream: "ftp://x"}, "Upstream"},       // scheme
		{Config{Upstream: "http://"}, "Upstream"},       // no host
		{Config{Upstream: "http://u:p@x"}, "Upstream"},  // credentials
		{Config{Upstream: "http://x/?q=1"}, "Upstream"}, // query
		{Config{Upstream: "http://x", CacheSize: -1}, "CacheSize"},
		{Config{Upstream: "http://x", CacheSize: 10, MaxObjectSize: 11}, "MaxObjectSize"}, // larger than the cache
		{Config{Upstream: "http://x", MaxObjectSize: -1}, "MaxObjectSize"},
		{Config{Upstream: "http://x", UpstreamConns: -1}, "UpstreamConns"},
		{Config{Upstream: "http://x", UpstreamTimeout: -1}, "UpstreamTimeout"},
		{Config{Upstream: "http://x", MaxConns: -1}, "MaxConns"},
		{Config{Upstream: "http://x", Overload: "drop"}, "Overload"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	s, err := New(Config{Upstream: "http://x:1/base/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.cfg.upstreamPrefix != "http://x:1/base" || s.cfg.MaxObjectSize != DefaultMaxObjectSize ||
		s.cfg.playlistTTL != DefaultPlaylistTTL || s.cfg.staleIfError != DefaultStaleIfError {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
}

func TestHandlerInsideNetHTTP(t *testing.T) {
	t.Parallel()
	st := &stalling{body: segment(64 << 10), release: make(chan struct{})}
	up := newUpstream(t, st.serve)
	s, err := New(Config{Upstream: up.URL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler()) // a library user's own server
	defer srv.Close()
	got, done := make(chan error, 2), make(chan error, 2)
	for range 2 {
		go firstHalf(context.Background(), srv.URL+"/live/1.ts", st.body, got, done)
	}
	for range 2 {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	close(st.release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if r := get(t, srv.URL+"/live/1.ts"); r.cache != "HIT" || up.requests("/live/1.ts") != 1 {
		t.Fatalf("%s, %d upstream requests", r.cache, up.requests("/live/1.ts"))
	}
	if r := get(t, srv.URL+"/healthz"); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
}
