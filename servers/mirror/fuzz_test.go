package mirror

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzRequest feeds raw requests through net/http's parser into the mirror. Whatever the
// input, the mirror must not panic, must answer a valid status, and anything it forwards
// must go to its one upstream with a clean origin-form path.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		"GET /live/master.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /live/500k/12.ts?token=abc HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /live/500k/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://evil.example/x.ts HTTP/1.1\r\nHost: evil.example\r\n\r\n",
		"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
		"GET //evil.example/x.ts HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a/../../b.ts HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a/%2e%2e/b.ts HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /%00.ts HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /x.ts HTTP/1.1\r\nHost: x\r\nCache-Control: no-cache\r\nRange: bytes=0-10\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /" + strings.Repeat("a", 5000) + ".ts HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /x.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET /x.TS HTTP/1.0\r\n\r\n",
	} {
		f.Add(seed)
	}
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host != "upstream.test" || r.URL.Scheme != "http" {
			panic("forwarded to another host: " + r.URL.String())
		}
		if !strings.HasPrefix(r.URL.Path, "/base/") || strings.Contains(r.URL.Path, "/../") ||
			strings.Contains(r.URL.Path, "//") || strings.HasSuffix(r.URL.Path, "/..") {
			panic("forwarded an unclean path: " + r.URL.Path)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			panic("forwarded method " + r.Method)
		}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"video/mp2t"}},
			ContentLength: 4, Body: io.NopCloser(strings.NewReader("data"))}, nil
	})
	s, err := New(Config{Upstream: "http://upstream.test/base", Transport: tr, Logger: testLogger(f),
		StaleIfError: -1, UpstreamTimeout: 5 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http would have answered 400 before the mirror saw it
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("status %d for %q", rec.Code, raw)
		}
	})
}

func FuzzCacheControl(f *testing.F) {
	for _, seed := range []string{"max-age=1", "s-maxage=3, max-age=30", "no-store", `max-age="7"`,
		"private, max-age=60", "max-age=99999999999999999999", "max-age=-1", "max-age", ",,,", "MAX-AGE=5"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ttl, noStore, ok := parseCacheControl([]string{v})
		if ttl < 0 || ttl > maxCacheControlAge {
			t.Fatalf("%q: ttl %v out of range", v, ttl)
		}
		if (noStore || ttl > 0) && !ok {
			t.Fatalf("%q: a result without ok", v)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, seed := range []string{"256MiB", "1.5GiB", "64KiB", "10MB", "4096", "0", "1e3", "-1", "9999999TiB", "0.5B", " 2 GiB "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !strings.Contains(err.Error(), "size") {
				t.Fatalf("%q: error %q does not say what was wrong", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("%q parsed to %d", s, n)
		}
		if m, err := ParseSize(FormatSize(n)); err != nil || m != n {
			t.Fatalf("%q → %d → %q → %d, %v", s, n, FormatSize(n), m, err)
		}
	})
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"256MiB", 256 << 20, true}, // the documented default
		{"1.5GiB", 3 << 29, true},   // fractions of a unit
		{"10MB", 10e6, true},        // SI units are decimal
		{"4096", 4096, true},        // bare bytes
		{"64kib", 64 << 10, true},   // case-insensitive
		{"-1MiB", 0, false},         // negative
		{"1.5B", 0, false},          // a fraction of a byte
		{"12XB", 0, false},          // unknown unit
		{"MiB", 0, false},           // no number
		{"99999999TiB", 0, false},   // overflow
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		want kind
	}{
		{"/live/master.m3u8", kindPlaylist},     // multivariant
		{"/live/500k/index.M3U8", kindPlaylist}, // case-insensitive
		{"/live/500k/12.ts", kindSegment},       // MPEG-TS
		{"/live/500k/init.mp4", kindSegment},    // fMP4 init section
		{"/live/500k/3.m4s", kindSegment},       // fMP4 segment
		{"/live.v2/index", kindOther},           // a dot in a directory is not an extension
		{"/favicon.ico", kindOther},             // not HLS
		{"/", kindOther},
	} {
		if got := kindOf(tc.path); got != tc.want {
			t.Errorf("kindOf(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}
