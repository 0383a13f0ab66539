package mirror

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// discard is a ResponseWriter that keeps nothing, so the benchmark measures the mirror's
// own hit path (lookup, headers, write) and its allocations.
type discard struct {
	h http.Header
	n int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// hitCases are a media playlist and a 2 s segment at 500 kbit/s.
var hitCases = []struct {
	name, path string
	size       int
}{
	{"playlist", "/live/500k/index.m3u8", 600},
	{"segment", "/live/500k/100.ts", 125_000},
}

func BenchmarkHit(b *testing.B) {
	for _, tc := range hitCases {
		b.Run(tc.name, func(b *testing.B) {
			body := segment(tc.size)
			up := newUpstream(b, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
			s, err := New(Config{Upstream: up.URL, PlaylistTTL: time.Hour, SegmentTTL: time.Hour, Logger: testLogger(b)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			w := &discard{h: http.Header{}}
			s.ServeHTTP(w, req) // warm the cache
			b.ReportAllocs()
			b.SetBytes(int64(tc.size))
			b.ResetTimer()
			for b.Loop() {
				clear(w.h)
				s.ServeHTTP(w, req)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			if s.countOf(kindOf(tc.path), resultHit) < b.N {
				b.Fatal("not every request was a hit")
			}
		})
	}
}

// BenchmarkHitHTTP is the hit path through net/http over loopback keep-alive
// connections: what a client sees (allocations include the client's).
func BenchmarkHitHTTP(b *testing.B) {
	for _, tc := range hitCases {
		b.Run(tc.name, func(b *testing.B) {
			body := segment(tc.size)
			up := newUpstream(b, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
			_, base := startMirror(b, Config{Upstream: up.URL, PlaylistTTL: time.Hour, SegmentTTL: time.Hour})
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			get(b, base+tc.path)
			b.ReportAllocs()
			b.SetBytes(int64(tc.size))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(base + tc.path)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkHitServe is the whole server path of a hit (Serve's connection loop, request
// parsing, answer) over loopback keep-alive connections, driven by raw clients that
// allocate nothing per request, so allocs/op is the server's.
func BenchmarkHitServe(b *testing.B) {
	for _, tc := range hitCases {
		b.Run(tc.name, func(b *testing.B) {
			body := segment(tc.size)
			up := newUpstream(b, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
			_, base := startMirror(b, Config{Upstream: up.URL, PlaylistTTL: time.Hour, SegmentTTL: time.Hour})
			get(b, base+tc.path)
			addr := strings.TrimPrefix(base, "http://")
			req := []byte("GET " + tc.path + " HTTP/1.1\r\nHost: mirror\r\nUser-Agent: bench\r\n\r\n")
			b.ReportAllocs()
			b.SetBytes(int64(tc.size))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					if err := readAnswer(br); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// readAnswer consumes one answer with a Content-Length, allocating nothing.
func readAnswer(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n = 0
			for _, c := range bytes.TrimSpace(v) {
				n = n*10 + int(c-'0')
			}
		}
	}
	if n < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := br.Discard(n)
	return err
}
