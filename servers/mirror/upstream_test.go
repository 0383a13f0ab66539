package mirror

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rawUpstream answers every connection with reply (after reading the request head) and
// closes it: an upstream that does not speak HTTP properly.
func rawUpstream(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				io.WriteString(c, reply)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestUpstreamGarbage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, reply string
		class       string
	}{
		{"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n", classMalformed},                                                         // some other protocol
		{"bad status line", "HTTP/1.1 abc Nope\r\n\r\n", classMalformed},                                                    // unparseable code
		{"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", classMalformed},                             // negative length
		{"closes at once", "", classTruncated},                                                                              // EOF before a response
		{"headers never end", "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n" + strings.Repeat("X", 100), classMalformed}, // cut inside a header line
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, base := startMirror(t, Config{Upstream: rawUpstream(t, tc.reply)})
			r := get(t, base+"/live/1.ts")
			if r.status != http.StatusBadGateway || !strings.Contains(r.body, "upstream failed") {
				t.Fatalf("got %d %q, want a clean 502", r.status, r.body)
			}
			if v := value(s.m.upstreamErrors.WithLabelValues("segment", tc.class)); v != 1 {
				t.Fatalf("upstream_errors{class=%q} = %v, want 1", tc.class, v)
			}
		})
	}
}

func TestUpstreamTruncatedBody(t *testing.T) {
	t.Parallel()
	// Promises 10,000 bytes, sends 5,000, hangs up.
	s, base := startMirror(t, Config{Upstream: rawUpstream(t,
		"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+strings.Repeat("x", 5000))})
	for i := range 2 {
		resp, err := http.Get(base + "/live/1.ts")
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !isTruncation(err) {
			t.Fatalf("request %d: read error %v, want the truncation passed on", i, err)
		}
	}
	// Not cached: each request went upstream.
	if v := value(s.m.upstreamErrors.WithLabelValues("segment", classTruncated)); v != 2 {
		t.Fatalf("truncated = %v, want 2", v)
	}
	if b, _ := s.cacheStats(); b != 0 {
		t.Fatalf("a truncated body was cached (%d bytes)", b)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestUpstreamHugeBody(t *testing.T) {
	// Not parallel: it measures the process's allocations.
	const huge = 64 << 20
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/huge.ts" {
			w.Header().Set("Content-Length", strconv.Itoa(huge))
		}
		io.CopyN(w, zeros{}, huge) // chunked when no length was set
	})
	s, base := startMirror(t, Config{Upstream: up.URL, CacheSize: 4 << 20, MaxObjectSize: 1 << 20})

	t.Run("with Content-Length streams through uncached", func(t *testing.T) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range 2 {
			resp, err := http.Get(base + "/huge.ts")
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != huge || resp.Header.Get("X-Cache") != "BYPASS" {
				t.Fatalf("request %d: %d bytes, err %v, X-Cache %s", i, n, err, resp.Header.Get("X-Cache"))
			}
		}
		runtime.ReadMemStats(&after)
		// Two 64 MiB bodies crossed the mirror; streaming allocates a small fraction of that.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
			t.Fatalf("allocated %d MiB relaying 128 MiB: the body was buffered", alloc>>20)
		}
	})
	t.Run("without Content-Length fails cleanly, then streams through", func(t *testing.T) {
		resp, err := http.Get(base + "/chunked.ts")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !isTruncation(err) || n > 2<<20 {
			t.Fatalf("first request: %d bytes, err %v: want a cut after at most the max object size", n, err)
		}
		if v := value(s.m.upstreamErrors.WithLabelValues("segment", classTooLarge)); v != 1 {
			t.Fatalf("too_large = %v, want 1", v)
		}
		resp, err = http.Get(base + "/chunked.ts")
		if err != nil {
			t.Fatal(err)
		}
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != huge || resp.Header.Get("X-Cache") != "BYPASS" {
			t.Fatalf("second request: %d bytes, err %v, X-Cache %s", n, err, resp.Header.Get("X-Cache"))
		}
	})
	if b, _ := s.cacheStats(); b > 4<<20 {
		t.Fatalf("cache holds %d bytes, over its 4 MiB", b)
	}
}

func TestUpstreamKeepAlivePool(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex // protects conns
	conns := 0
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("seg"))
	}))
	up.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	_, base := startMirror(t, Config{Upstream: up.URL, UpstreamConns: 4})
	for i := range 20 {
		if r := get(t, base+"/live/"+strconv.Itoa(i)+".ts"); r.status != 200 || r.cache != "MISS" {
			t.Fatalf("miss %d: %d %s", i, r.status, r.cache)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Fatalf("20 sequential misses opened %d upstream connections, want 1 kept alive", conns)
	}
}
