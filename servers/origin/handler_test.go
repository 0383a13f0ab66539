package origin

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/serverkit"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGoldenPlaylists pins the exact text of the multivariant and a media playlist.
func TestGoldenPlaylists(t *testing.T) {
	s, fc := fakeServer(t, Config{Renditions: 3})
	fc.Set(testEpoch.Add(25*time.Second + 300*time.Millisecond))
	for _, tc := range []struct{ path, golden string }{
		{"/live/master.m3u8", "master.m3u8"},
		{"/live/1500k/index.m3u8", "media.m3u8"},
	} {
		w := get(s.Handler(), "GET", tc.path)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d", tc.path, w.Code)
		}
		file := filepath.Join("testdata", tc.golden)
		if *update {
			if err := os.WriteFile(file, w.Body.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if got := w.Body.String(); got != string(want) {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.path, got, want)
		}
	}
}

func TestResponseHeaders(t *testing.T) {
	s, fc := fakeServer(t, Config{})
	fc.Set(testEpoch.Add(time.Minute))
	h := s.Handler()
	for _, tc := range []struct {
		name, method, path string
		code               int
		contentType, cache string
		length             int // -1: any
	}{
		{"master", "GET", "/live/master.m3u8", 200, ContentTypePlaylist, PlaylistCacheControl, -1},
		{"media playlist", "GET", "/live/500k/index.m3u8", 200, ContentTypePlaylist, PlaylistCacheControl, -1},
		{"a query string is ignored", "GET", "/live/500k/index.m3u8?_HLS_msn=3&x=1", 200, ContentTypePlaylist, PlaylistCacheControl, -1},
		{"segment", "GET", "/live/500k/25.ts", 200, ContentTypeSegment, SegmentCacheControl, 125020},
		{"HEAD of a segment sends no body", "HEAD", "/live/500k/25.ts", 200, ContentTypeSegment, SegmentCacheControl, 0},
		{"a segment not yet published", "GET", "/live/500k/30.ts", 404, "text/plain; charset=utf-8", NotFoundCacheControl, -1},
		{"a segment long gone", "GET", "/live/500k/2.ts", 404, "text/plain; charset=utf-8", NotFoundCacheControl, -1},
		{"POST is refused", "POST", "/live/500k/index.m3u8", 405, "text/plain; charset=utf-8", NotFoundCacheControl, -1},
		{"healthz", "GET", "/healthz", 200, "text/plain; charset=utf-8", "no-store", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := get(h, tc.method, tc.path)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if got := w.Header().Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q, want %q", got, tc.cache)
			}
			if tc.length >= 0 && w.Body.Len() != tc.length {
				t.Errorf("body %d bytes, want %d", w.Body.Len(), tc.length)
			}
			if tc.code == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", w.Header().Get("Allow"))
			}
		})
	}
}

func TestConditionalAndRangeRequests(t *testing.T) {
	s, fc := fakeServer(t, Config{})
	fc.Set(testEpoch.Add(time.Minute))
	h := s.Handler()
	for _, tc := range []struct {
		path         string
		lastModified bool // playlists change within a second with short segments: ETag only
	}{
		{"/live/master.m3u8", true},
		{"/live/500k/index.m3u8", false},
		{"/live/500k/25.ts", true},
	} {
		path := tc.path
		first := get(h, "GET", path)
		etag, modified := first.Header().Get("Etag"), first.Header().Get("Last-Modified")
		if etag == "" || (modified != "") != tc.lastModified {
			t.Fatalf("%s: ETag %q, Last-Modified %q", path, etag, modified)
		}
		if w := get(h, "GET", path, "If-None-Match", etag); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("%s If-None-Match: %d with %d bytes, want 304", path, w.Code, w.Body.Len())
		}
		if w := get(h, "GET", path, "If-Modified-Since", modified); tc.lastModified && w.Code != http.StatusNotModified {
			t.Errorf("%s If-Modified-Since: %d, want 304", path, w.Code)
		}
		if w := get(h, "GET", path, "If-None-Match", `"something-else"`); w.Code != http.StatusOK {
			t.Errorf("%s stale If-None-Match: %d, want 200", path, w.Code)
		}
	}
	// The playlist changes when the next segment is published: the old ETag no longer matches.
	old := get(h, "GET", "/live/500k/index.m3u8").Header().Get("Etag")
	fc.Advance(2 * time.Second)
	if w := get(h, "GET", "/live/500k/index.m3u8", "If-None-Match", old); w.Code != http.StatusOK {
		t.Errorf("new playlist with the old ETag: %d, want 200", w.Code)
	}
	full := get(h, "GET", "/live/500k/25.ts").Body.Bytes()
	w := get(h, "GET", "/live/500k/25.ts", "Range", "bytes=188-375")
	if w.Code != http.StatusPartialContent || w.Body.String() != string(full[188:376]) {
		t.Errorf("range: %d with %d bytes", w.Code, w.Body.Len())
	}
	if w := get(h, "GET", "/live/500k/25.ts", "Range", "bytes=999999999-"); w.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: %d", w.Code)
	}
}

// TestHostileRequests: bad input gets a 4xx and a message, never a panic or a 5xx.
func TestHostileRequests(t *testing.T) {
	s, fc := fakeServer(t, Config{Renditions: 2})
	fc.Set(testEpoch.Add(time.Hour))
	h := s.Handler()
	for _, tc := range []struct {
		name, method, path string
		code               int
	}{
		{"unknown rendition", "GET", "/live/700k/index.m3u8", 404},
		{"rendition name in capitals", "GET", "/live/500K/index.m3u8", 404},
		{"unknown rendition's segment", "GET", "/live/9k/1.ts", 404},
		{"negative sequence number", "GET", "/live/500k/-1.ts", 404},
		{"sequence with a plus sign", "GET", "/live/500k/+5.ts", 404},
		{"leading zeros are another name", "GET", "/live/500k/0007.ts", 404},
		{"absurd sequence number", "GET", "/live/500k/999999999999999999.ts", 404},
		{"sequence beyond int64", "GET", "/live/500k/99999999999999999999999999.ts", 404},
		{"hex sequence", "GET", "/live/500k/0x10.ts", 404},
		{"empty sequence", "GET", "/live/500k/.ts", 404},
		{"double extension", "GET", "/live/500k/5.ts.ts", 404},
		{"traversal", "GET", "/live/../../etc/passwd", 404},
		{"traversal into a rendition", "GET", "/live/500k/../../metrics", 404},
		{"double slash", "GET", "/live//index.m3u8", 404},
		{"nested path", "GET", "/live/500k/a/1.ts", 404},
		{"directory listing", "GET", "/live/", 404},
		{"root", "GET", "/", 404},
		{"a long path", "GET", "/live/" + strings.Repeat("a", 5000) + "/index.m3u8", 404},
		{"NUL in the path", "GET", "/live/500k\x00/index.m3u8", 404},
		{"DELETE", "DELETE", "/live/500k/1.ts", 405},
		{"unknown method", "BREW", "/live/master.m3u8", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := get(h, tc.method, tc.path)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d", w.Code, tc.code)
			}
			if w.Body.Len() == 0 || w.Body.Len() > 300 {
				t.Fatalf("error body of %d bytes: %q", w.Body.Len(), w.Body.String())
			}
		})
	}
}

// TestOversizedHeaders sends real requests to a real listener: headers beyond the
// limit get 431 from net/http, and the server keeps serving.
func TestOversizedHeaders(t *testing.T) {
	s, fc := fakeServer(t, Config{})
	fc.Set(testEpoch.Add(time.Minute))
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewHTTPServer(s.Handler(), quietLog)
	ts.Start()
	t.Cleanup(ts.Close)

	raw := func(req string) string {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go io.WriteString(c, req) // the server may answer before reading it all
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("reading the status line: %v", err)
		}
		return strings.TrimSpace(line)
	}
	big := strings.Repeat("x", 2*DefaultMaxHeaderBytes)
	if got := raw("GET /live/master.m3u8 HTTP/1.1\r\nHost: o\r\nX-Big: " + big + "\r\n\r\n"); !strings.Contains(got, " 431 ") {
		t.Errorf("oversized header: %q, want 431", got)
	}
	if got := raw("GET /live/" + big + " HTTP/1.1\r\nHost: o\r\n\r\n"); !strings.Contains(got, " 431 ") {
		t.Errorf("oversized request line: %q, want 431", got)
	}
	if got := raw("GET /live/%zz HTTP/1.1\r\nHost: o\r\n\r\n"); !strings.Contains(got, " 400 ") {
		t.Errorf("malformed escape: %q, want 400", got)
	}
	if got := raw("GET /live/master.m3u8 HTTP/1.1\r\nHost: o\r\n\r\n"); !strings.Contains(got, " 200 ") {
		t.Errorf("after the hostile requests: %q, want 200", got)
	}
}

// TestEveryMetricMoves drives traffic of every kind and checks each metric the origin
// exports has moved.
func TestEveryMetricMoves(t *testing.T) {
	s, fc := fakeServer(t, Config{Labels: serverkit.Labels{"run": "r1"}})
	fc.Set(testEpoch.Add(time.Minute))
	h := s.Handler()
	get(h, "GET", "/live/master.m3u8")
	get(h, "GET", "/live/500k/index.m3u8")
	seg := get(h, "GET", "/live/500k/25.ts")
	get(h, "GET", "/live/500k/1.ts")
	get(h, "GET", "/nope")
	get(h, "GET", "/healthz")
	get(h, "PUT", "/live/master.m3u8")
	get(h, "GET", "/live/500k/25.ts", "Range", "bytes=0-0")

	for _, tc := range []struct {
		name    string
		labels  []string
		atLeast float64
	}{
		{MetricRequests, []string{"kind", "master", "code", "200"}, 1},
		{MetricRequests, []string{"kind", "playlist", "code", "200"}, 1},
		{MetricRequests, []string{"kind", "segment", "code", "200"}, 1},
		{MetricRequests, []string{"kind", "segment", "code", "404"}, 1},
		{MetricRequests, []string{"kind", "segment", "code", "206"}, 1},
		{MetricRequests, []string{"kind", "other", "code", "404"}, 1},
		{MetricRequests, []string{"kind", "master", "code", "405"}, 1},
		{MetricRequests, []string{"kind", "healthz", "code", "200"}, 1},
		{MetricRequests, []string{"run", "r1"}, 8},
		{MetricResponseBytes, []string{"kind", "segment"}, float64(seg.Body.Len()) + 1},
		{MetricDuration, []string{"kind", "playlist"}, 1},
		{MetricSegmentsBuilt, []string{"rendition", "500k"}, 1},
		{MetricLiveEdge, nil, 29},
		{"process_open_fds", nil, 1},
	} {
		if got := counterValue(t, s, tc.name, tc.labels...); got < tc.atLeast {
			t.Errorf("%s%v = %v, want >= %v", tc.name, tc.labels, got, tc.atLeast)
		}
	}
	// In-flight counts the request being served: a scrape sees itself.
	w := get(h, "GET", "/metrics")
	if !strings.Contains(w.Body.String(), MetricInFlight+`{run="r1"} 1`) {
		t.Errorf("in-flight during a scrape is not 1:\n%s", grepLines(w.Body.String(), MetricInFlight))
	}
	if got := counterValue(t, s, MetricInFlight); got != 0 {
		t.Errorf("in-flight after all requests = %v, want 0", got)
	}
	if got := counterValue(t, s, MetricRequests, "kind", "metrics", "code", "200"); got != 1 {
		t.Errorf("metrics requests = %v, want 1", got)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string // the error must start with it
	}{
		{"negative segment duration", Config{SegmentDuration: -time.Second}, "segment-duration:"},
		{"segment duration below the minimum", Config{SegmentDuration: 50 * time.Millisecond}, "segment-duration:"},
		{"segment duration above the maximum", Config{SegmentDuration: 2 * time.Minute}, "segment-duration:"},
		{"fractional milliseconds", Config{SegmentDuration: 2*time.Second + 500*time.Microsecond}, "segment-duration:"},
		{"window below 3", Config{Window: 2}, "window:"},
		{"negative window", Config{Window: -6}, "window:"},
		{"window too large", Config{Window: 100000}, "window:"},
		{"3 × 2.5 s is less than 3 target durations of 3 s", Config{SegmentDuration: 2500 * time.Millisecond, Window: 3}, "window:"},
		{"3 × 0.5 s is less than 3 s", Config{SegmentDuration: 500 * time.Millisecond, Window: 3}, "window:"},
		{"no renditions", Config{Renditions: -1}, "renditions:"},
		{"too many renditions", Config{Renditions: 7}, "renditions:"},
		{"negative bitrate", Config{Bitrate: -5}, "bitrate:"},
		{"bitrate below what the media needs", Config{Bitrate: 100_000}, "bitrate:"},
		{"absurd bitrate", Config{Bitrate: 1 << 60}, "bitrate:"},
		{"ladder too big for memory", Config{Bitrate: 50_000_000, Renditions: 6}, "bitrate:"},
		{"dir and ffmpeg together", Config{Dir: t.TempDir(), FFmpeg: true}, "dir:"},
		{"dir missing", Config{Dir: "/does/not/exist"}, "dir:"},
		{"dir is a file", Config{Dir: "/etc/hostname"}, "dir:"},
		{"epoch in the year 1000", Config{Epoch: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, "epoch:"},
		{"ffmpeg missing", Config{FFmpeg: true, FFmpegPath: "/no/such/ffmpeg"}, "ffmpeg:"},
		{"ffmpeg bitrate too low", Config{FFmpeg: true, Bitrate: 90_000}, "bitrate:"},
		{"ffmpeg segment not whole frames", Config{FFmpeg: true, SegmentDuration: 1010 * time.Millisecond}, "segment-duration:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = quietLog
			s, err := New(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("New accepted it")
			}
			if !strings.HasPrefix(err.Error(), tc.field) {
				t.Fatalf("error %q does not start with %q", err, tc.field)
			}
		})
	}
}

func TestLowestAcceptedBitrateWorks(t *testing.T) {
	_, err := New(Config{Bitrate: 100_000, Logger: quietLog})
	var min int64
	if _, scanErr := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "the ")+4:], "%d", &min); scanErr != nil {
		t.Fatalf("cannot read the minimum from %q", err)
	}
	s, fc := fakeServer(t, Config{Bitrate: min})
	fc.Set(testEpoch.Add(time.Minute))
	if w := get(s.Handler(), "GET", "/live/"+FormatBitrate(min)+"/20.ts"); w.Code != 200 {
		t.Fatalf("segment at the minimum bit rate %d: %d %s", min, w.Code, w.Body)
	}
	if _, err := New(Config{Bitrate: min - 1504, Logger: quietLog}); err == nil {
		t.Fatalf("a packet per second below the minimum %d was accepted", min)
	}
}

func TestParseBitrate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // 0: an error
	}{
		{"500000", 500_000},
		{"500k", 500_000},
		{"500K", 500_000},
		{"1.5M", 1_500_000},
		{"1.5m", 1_500_000},
		{"2G", 2_000_000_000},
		{"0.5k", 500},
		{"1.0005k", 0}, // half a bit
		{"  750k ", 750_000},
		{"0", 0},
		{"-500k", 0},
		{"+500k", 0},
		{"k", 0},
		{"", 0},
		{"1e6", 0},
		{"0x10", 0},
		{"500kb", 0},
		{"NaN", 0},
		{"99999999999999999999", 0},
		{"11G", 0}, // above the limit
	} {
		got, err := ParseBitrate(tc.in)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("ParseBitrate(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBitrate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if got := FormatBitrate(1_500_000); got != "1500k" {
		t.Errorf("FormatBitrate(1.5M) = %q", got)
	}
	if got := FormatBitrate(123_456); got != "123456" {
		t.Errorf("FormatBitrate(123456) = %q", got)
	}
}
