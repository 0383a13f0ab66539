package mirror

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// exchange sends raw on a new connection, half-closes it, and returns every answer the
// mirror wrote, parsed in order.
func exchange(t testing.TB, addr, raw string) ([]*http.Response, [][]byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading answers: %v", err)
	}
	return parseAnswers(t, all, raw)
}

// parseAnswers splits a byte stream into HTTP answers; HEAD answers have no body.
func parseAnswers(t testing.TB, all []byte, raw string) ([]*http.Response, [][]byte) {
	t.Helper()
	var resps []*http.Response
	var bodies [][]byte
	br := bufio.NewReader(bytes.NewReader(all))
	heads := strings.Count(raw, "HEAD ")
	for {
		if _, err := br.Peek(1); err != nil {
			return resps, bodies
		}
		var req *http.Request
		if heads > 0 && len(resps) < heads { // the tests put HEAD requests first
			req = &http.Request{Method: http.MethodHead}
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("answer %d does not parse: %v\n%q", len(resps)+1, err, all)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d body: %v\n%q", len(resps)+1, err, all)
		}
		resps = append(resps, resp)
		bodies = append(bodies, b)
	}
}

func TestConnHTTP(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked.ts" {
			w.Write([]byte("part1"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
			return
		}
		w.Header().Set("Content-Type", "video/mp2t")
		w.Write([]byte("seg:" + r.URL.Path))
	})
	_, base := startMirror(t, Config{Upstream: up.URL})
	addr := strings.TrimPrefix(base, "http://")
	get(t, base+"/a.ts")
	get(t, base+"/b.ts")
	for _, tc := range []struct {
		name   string
		raw    string
		status []int
		bodies []string
		close  bool // the last answer says Connection: close
	}{
		// three pipelined requests are answered in order on one connection
		{"pipelined", "GET /a.ts HTTP/1.1\r\nHost: x\r\n\r\nGET /b.ts HTTP/1.1\r\nHost: x\r\n\r\nGET /a.ts HTTP/1.1\r\nHost: x\r\n\r\n",
			[]int{200, 200, 200}, []string{"seg:/a.ts", "seg:/b.ts", "seg:/a.ts"}, false},
		// HEAD: headers only, and the connection goes on
		{"HEAD then GET", "HEAD /a.ts HTTP/1.1\r\nHost: x\r\n\r\nGET /b.ts HTTP/1.1\r\nHost: x\r\n\r\n",
			[]int{200, 200}, []string{"", "seg:/b.ts"}, false},
		// HTTP/1.0 gets its answer and a closed connection
		{"HTTP/1.0", "GET /a.ts HTTP/1.0\r\n\r\nGET /b.ts HTTP/1.0\r\n\r\n", []int{200}, []string{"seg:/a.ts"}, true},
		// Connection: close is honoured
		{"Connection: close", "GET /a.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b.ts HTTP/1.1\r\nHost: x\r\n\r\n",
			[]int{200}, []string{"seg:/a.ts"}, true},
		// a request with a body is refused and its body never read as a request
		{"POST with body", "POST /a.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\nGET /b.ts HTTP/1.1\r\nHost: x\r\n\r\n",
			[]int{405}, nil, true},
		// a chunked request body likewise
		{"chunked body", "GET /a.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			[]int{200}, []string{"seg:/a.ts"}, true},
		// garbage is a 400, then the connection closes
		{"garbage", "HELLO\r\n\r\n", []int{400}, nil, true},
		// a bad request after a good one
		{"good then garbage", "GET /a.ts HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/9.9 junk\r\n\r\n", []int{200, 400}, []string{"seg:/a.ts"}, true},
		// an oversized head is a 431
		{"huge head", "GET /a.ts HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 40<<10) + "\r\n\r\n", []int{431}, nil, true},
		// a body without Content-Length streams chunked to the client
		{"chunked answer", "GET /chunked.ts HTTP/1.1\r\nHost: x\r\n\r\n", []int{200}, []string{"part1part2"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resps, bodies := exchange(t, addr, tc.raw)
			if len(resps) != len(tc.status) {
				t.Fatalf("%d answers, want %d", len(resps), len(tc.status))
			}
			for i, r := range resps {
				if r.StatusCode != tc.status[i] {
					t.Errorf("answer %d: %d, want %d", i+1, r.StatusCode, tc.status[i])
				}
				if i < len(tc.bodies) && string(bodies[i]) != tc.bodies[i] {
					t.Errorf("answer %d: body %q, want %q", i+1, bodies[i], tc.bodies[i])
				}
				if r.Header.Get("Date") == "" {
					t.Errorf("answer %d has no Date", i+1)
				}
			}
			if last := resps[len(resps)-1]; last.Close != tc.close {
				t.Errorf("last answer Close=%v, want %v", last.Close, tc.close)
			}
		})
	}
}

func TestConnIdleTimeout(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	_, base := startMirror(t, Config{Upstream: up.URL, IdleTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if st := roundTrip(t, c, br, "/a.ts"); st != 200 {
		t.Fatal(st)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection: %v, want the mirror to close it", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	st := &stalling{body: segment(32 << 10), release: make(chan struct{})}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy.ts" {
			st.serve(w, r)
			return
		}
		w.Write([]byte("ok"))
	})
	s, err := New(Config{Upstream: up.URL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	idle, err := net.Dial("tcp", ln.Addr().String()) // an idle keep-alive connection
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	ibr := bufio.NewReader(idle)
	if st := roundTrip(t, idle, ibr, "/warm.ts"); st != 200 {
		t.Fatalf("warm-up: %d", st)
	}
	got, done := make(chan error, 1), make(chan error, 1)
	go firstHalf(context.Background(), base+"/busy.ts", st.body, got, done)
	_ = idle.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := ibr.ReadByte(); err == io.EOF {
		t.Fatal("the idle connection closed before shutdown")
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	cancel() // shut down while a segment is mid-flight
	_ = idle.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection on shutdown: %v, want closed", err)
	}
	close(st.release)
	if err := <-done; err != nil {
		t.Fatalf("the busy answer did not complete during shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestHeaderValuesCannotSplitAnswers(t *testing.T) {
	t.Parallel()
	if got := string(appendHeaderValue(nil, "a\r\nSet-Cookie: x")); got != "a  Set-Cookie: x" {
		t.Fatalf("%q", got)
	}
}

// FuzzConn feeds raw bytes to a connection: whatever arrives, the mirror answers with
// well-formed HTTP (or closes), never panics, and never forwards more than it should.
func FuzzConn(f *testing.F) {
	for _, seed := range []string{
		"GET /live/1.ts HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a.m3u8 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /a.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a.ts HTTP/1.0\r\n\r\n",
		"POST /a.ts HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
		"GET /a.ts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
		"GET http://evil/ HTTP/1.1\r\nHost: evil\r\n\r\n",
		"GET /a.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"\r\n\r\n",
		"GET / HTTP/1.1\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n",
	} {
		f.Add(seed)
	}
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host != "upstream.test" {
			panic("forwarded to " + r.URL.Host)
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1,
			Body: io.NopCloser(strings.NewReader("streamed"))}, nil
	})
	s, err := New(Config{Upstream: "http://upstream.test", Transport: tr, Logger: testLogger(f),
		ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	go s.Serve(ctx, ln)
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, raw)
		c.(*net.TCPConn).CloseWrite()
		all, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if len(all) == 0 {
			return // closed without an answer (a client that sent nothing usable)
		}
		// The first answer must be well-formed HTTP with a real status (HEAD framing:
		// only its head is checked, whatever the method was).
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), &http.Request{Method: http.MethodHead})
		if err != nil {
			t.Fatalf("%q: answer does not parse: %v\n%q", raw, err, all)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 599 {
			t.Fatalf("%q: status %d", raw, resp.StatusCode)
		}
	})
}
