package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// connServer runs serve on every accepted connection and counts connections.
func connServer(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) (*endpoint, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	ep, _, err := parseEndpoint("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return ep, &conns
}

// readHead consumes one request head; false at EOF.
func readHead(br *bufio.Reader) bool {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if line == "\r\n" || line == "\n" {
			return true
		}
	}
}

func newTestClient() *httpClient {
	return &httpClient{sched: realScheduler{}, userAgent: DefaultUserAgent, idleAfter: time.Minute}
}

func getOnce(c fetcher, ep *endpoint, keep bool) *response {
	res := &response{}
	c.get(&request{kind: KindPlaylist, ep: ep, path: "/x", keep: keep, ttfbTimeout: 5 * time.Second, totalTimeout: 5 * time.Second}, res)
	return res
}

func TestClientReadsEveryResponseForm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		answer   string // sent twice, for two requests
		body     string
		code     int
		sameConn bool // the second request reuses the connection
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", 200, true},
		{"header case and spaces", "HTTP/1.1 200 OK\r\ncontent-length:   5  \r\nX-A: b\r\n\r\nhello", "hello", 200, true},
		{"chunked with extension and trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n", "hello", 200, true},
		{"interim 103 then 200", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", 200, true},
		{"204 has no body", "HTTP/1.1 204 No Content\r\n\r\n", "", 204, true},
		{"404 body is read and the connection kept", "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!", "no!", 404, true},
		{"Connection: close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", "ok", 200, false},
		{"HTTP/1.0 closes by default", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", 200, false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", "ok", 200, true},
		{"bare LF line ends", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "ok", 200, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep, conns := connServer(t, func(c net.Conn, br *bufio.Reader) {
				for readHead(br) {
					io.WriteString(c, tc.answer)
					if !tc.sameConn {
						return
					}
				}
			})
			c := newTestClient()
			defer c.closeAll()
			for i := 0; i < 2; i++ {
				res := getOnce(c, ep, true)
				if res.err != nil || res.code != tc.code || string(res.body) != tc.body || res.bytes != int64(len(tc.body)) || !res.sent {
					t.Fatalf("request %d: code %d body %q bytes %d sent %v err %v", i, res.code, res.body, res.bytes, res.sent, res.err)
				}
				res.release()
			}
			want := int64(2)
			if tc.sameConn {
				want = 1
			}
			if got := conns.Load(); got != want {
				t.Fatalf("%d connections, want %d", got, want)
			}
		})
	}
}

func TestClientReadsUntilCloseWithoutLength(t *testing.T) {
	t.Parallel()
	ep, _ := connServer(t, func(c net.Conn, br *bufio.Reader) {
		readHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
		c.Write(bytes.Repeat([]byte("x"), 100_000))
	})
	c := newTestClient()
	defer c.closeAll()
	res := getOnce(c, ep, false)
	if res.err != nil || res.bytes != 100_000 || res.body != nil {
		t.Fatalf("bytes %d body %d err %v", res.bytes, len(res.body), res.err)
	}
}

func TestClientRejectsMalformedAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer string
		class  classIndex
	}{
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", clsMalformed},
		{"status not a number", "HTTP/1.1 2x0 OK\r\n\r\n", clsMalformed},
		{"header without colon", "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", clsMalformed},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", clsMalformed},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", clsMalformed},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", clsMalformed},
		{"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n", clsMalformed},
		{"unknown transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", clsMalformed},
		{"header line over the buffer", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", readBufSize) + "\r\n\r\n", clsMalformed},
		{"body shorter than announced", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", clsReset},
		{"closed before answering", "", clsReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep, _ := connServer(t, func(c net.Conn, br *bufio.Reader) {
				readHead(br)
				io.WriteString(c, tc.answer)
			})
			c := newTestClient()
			defer c.closeAll()
			res := getOnce(c, ep, true)
			defer res.release()
			if res.err == nil || classifyError(res.err) != tc.class {
				t.Fatalf("err %v (class %s), want class %s", res.err, errorClasses[classifyError(res.err)], errorClasses[tc.class])
			}
		})
	}
}

func TestClientRetriesOnceWhenAnIdleConnectionWasClosed(t *testing.T) {
	t.Parallel()
	var served atomic.Int64
	// The server answers one request per connection but says nothing about closing:
	// the client's second request meets a closed keep-alive connection.
	ep, conns := connServer(t, func(c net.Conn, br *bufio.Reader) {
		if readHead(br) {
			served.Add(1)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newTestClient()
	defer c.closeAll()
	for i := 0; i < 3; i++ {
		res := getOnce(c, ep, false)
		if res.err != nil || res.code != 200 {
			t.Fatalf("request %d: %v", i, res.err)
		}
	}
	if served.Load() != 3 || conns.Load() != 3 {
		t.Fatalf("served %d on %d connections, want 3 on 3", served.Load(), conns.Load())
	}
}

func TestClientConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ep, _, _ := parseEndpoint("http://" + addr)
	c := newTestClient()
	defer c.closeAll()
	res := getOnce(c, ep, false)
	if classifyError(res.err) != clsRefused || res.sent {
		t.Fatalf("err %v sent %v, want refused and not sent", res.err, res.sent)
	}
}

func TestClientCountsBodyWhileDiscarding(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	ep, _ := connServer(t, func(c net.Conn, br *bufio.Reader) {
		for readHead(br) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
			c.Write(make([]byte, size))
		}
	})
	c := newTestClient()
	defer c.closeAll()
	res := &response{}
	c.get(&request{kind: KindSegment, ep: ep, path: "/1.ts", ttfbTimeout: 5 * time.Second, totalTimeout: 5 * time.Second}, res)
	if res.err != nil || res.bytes != size || res.body != nil || res.ttfb <= 0 || res.total < res.ttfb {
		t.Fatalf("bytes %d kept %d ttfb %v total %v err %v", res.bytes, len(res.body), res.ttfb, res.total, res.err)
	}
}

// TestClientsAgree checks the viewer's own client against net/http with httptrace on a
// server that waits before answering: both see the wait as time to first byte, and the
// same bytes.
func TestClientsAgree(t *testing.T) {
	t.Parallel()
	const wait = 60 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(wait) // the server's own slowness, the thing being measured
		w.Write(bytes.Repeat([]byte("s"), 200_000))
	}))
	defer srv.Close()
	ep, _, _ := parseEndpoint(srv.URL)
	for _, c := range []fetcher{newTestClient(), newNetHTTPClient(realScheduler{}, nil, nil, DefaultUserAgent, time.Minute)} {
		res := &response{}
		c.get(&request{kind: KindSegment, ep: ep, path: "/s.ts", ttfbTimeout: 5 * time.Second, totalTimeout: 5 * time.Second}, res)
		c.closeAll()
		if res.err != nil || res.code != 200 || res.bytes != 200_000 {
			t.Fatalf("%T: code %d bytes %d err %v", c, res.code, res.bytes, res.err)
		}
		if res.ttfb < wait || res.total < res.ttfb {
			t.Fatalf("%T: ttfb %v total %v; the server waited %v before answering", c, res.ttfb, res.total, wait)
		}
	}
}

func TestClientTimeoutIsClassified(t *testing.T) {
	t.Parallel()
	ep, _ := connServer(t, func(c net.Conn, br *bufio.Reader) {
		readHead(br)
		io.Copy(io.Discard, br) // never answers
	})
	for _, c := range []fetcher{newTestClient(), newNetHTTPClient(realScheduler{}, nil, nil, DefaultUserAgent, time.Minute)} {
		res := &response{}
		c.get(&request{kind: KindSegment, ep: ep, path: "/1.ts", ttfbTimeout: 50 * time.Millisecond, totalTimeout: time.Second}, res)
		c.closeAll()
		if classifyError(res.err) != clsTimeout || !errors.Is(res.err, errTimeout) {
			t.Fatalf("%T: err %v, want a timeout", c, res.err)
		}
	}
}

// FuzzReadResponse: any bytes from a server are an answer or an error, never a panic,
// and the byte counts stay within what was sent.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nrest of stream"), false)
	f.Fuzz(func(t *testing.T, data []byte, keep bool) {
		buf := make([]byte, 64)
		rd := respReader{src: bytes.NewReader(data), buf: buf}
		var res response
		_, err := rd.readResponse(keep, &res)
		if res.bytes < 0 || res.bytes > int64(len(data)) || int64(len(res.body)) > res.bytes {
			t.Fatalf("bytes %d body %d from %d input bytes", res.bytes, len(res.body), len(data))
		}
		if !keep && res.body != nil {
			t.Fatal("kept a body it was told to drop")
		}
		if err == nil && (res.code < 200 || res.code > 999) {
			t.Fatalf("accepted status %d", res.code)
		}
		res.release()
	})
}

func TestClientsSpeakTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("#EXTM3U\n"))
	}))
	defer srv.Close()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig
	ep, _, _ := parseEndpoint(srv.URL)
	own := newTestClient()
	own.tls = roots
	for _, c := range []fetcher{own, newNetHTTPClient(realScheduler{}, nil, roots, DefaultUserAgent, time.Minute)} {
		for i := 0; i < 2; i++ {
			res := getOnce(c, ep, true)
			if res.err != nil || string(res.body) != "#EXTM3U\n" {
				t.Fatalf("%T: %q %v", c, res.body, res.err)
			}
			res.release()
		}
		c.closeAll()
	}
}
