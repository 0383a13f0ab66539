package origin

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/servers/origin/mpegts"
)

var routeSeeds = []string{
	"/live/master.m3u8", "/live/500k/index.m3u8", "/live/500k/0.ts", "/live/1500k/123.ts",
	"/metrics", "/healthz", "/", "", "/live/", "/live//index.m3u8", "/live/500k/007.ts",
	"/live/500k/-1.ts", "/live/500k/99999999999999999999.ts", "/live/../etc/passwd",
	"/live/500k/../../x.ts", "/live/.hidden/index.m3u8", "/live/a\x00b/1.ts", "/live/500k/1.ts/",
	"/live/sub/dir/seg.m4s", "/live/x.vtt", "/live/a\\b.ts", "/live/index.m3u8.tmp",
}

// FuzzRoute checks the synthetic router: it never panics, and what it accepts is exactly
// the canonical form of what it names.
func FuzzRoute(f *testing.F) {
	for _, s := range routeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt := parseRoute(p)
		var canonical string
		switch rt.kind {
		case kindMaster:
			canonical = "/live/master.m3u8"
		case kindPlaylist:
			canonical = "/live/" + rt.rendition + "/index.m3u8"
		case kindSegment:
			if rt.seq < 0 {
				t.Fatalf("negative sequence %d from %q", rt.seq, p)
			}
			canonical = "/live/" + rt.rendition + "/" + strconv.FormatInt(rt.seq, 10) + ".ts"
		case kindMetrics:
			canonical = "/metrics"
		case kindHealthz:
			canonical = "/healthz"
		case kindOther:
			return
		default:
			t.Fatalf("unknown kind %d", rt.kind)
		}
		if canonical != p {
			t.Fatalf("%q routed as %v %q: its canonical path is %q", p, rt.kind, rt.rendition, canonical)
		}
	})
}

// FuzzFileRoute checks the directory router: whatever it accepts is a local path below
// the directory, with an HLS extension.
func FuzzFileRoute(f *testing.F) {
	for _, s := range routeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt := parseFileRoute(p)
		if rt.kind == kindOther || rt.kind == kindMetrics || rt.kind == kindHealthz {
			return
		}
		if !filepath.IsLocal(rt.file) || filepath.Clean(rt.file) != rt.file || strings.Contains(rt.file, "\\") {
			t.Fatalf("%q maps to %q, which is not a plain path below the directory", p, rt.file)
		}
		if _, ok := fileTypes[filepath.Ext(rt.file)]; !ok {
			t.Fatalf("%q maps to %q with an extension not served", p, rt.file)
		}
		for elem := range strings.SplitSeq(rt.file, "/") {
			if strings.HasPrefix(elem, ".") {
				t.Fatalf("%q maps to a hidden element in %q", p, rt.file)
			}
		}
	})
}

// FuzzHandler sends arbitrary methods, paths and headers to a live origin: it must
// answer every one with a status it documents, and whatever segment it serves is whole
// transport packets.
func FuzzHandler(f *testing.F) {
	for _, s := range routeSeeds {
		f.Add("GET", s, "", "")
	}
	f.Add("HEAD", "/live/500k/20.ts", "Range", "bytes=0-100")
	f.Add("GET", "/live/1500k/20.ts", "If-None-Match", "*")
	f.Add("GET", "/live/500k/index.m3u8", "If-Modified-Since", "garbage")
	f.Add("OPTIONS", "/live/master.m3u8", "", "")
	f.Add("GET", "/live/500k/20.ts", "Range", "bytes=-1,5-2,999999999999999999999-")
	s, fc := fakeServer(f, Config{Renditions: 2})
	fc.Set(testEpoch.Add(time.Minute))
	h := s.Handler()
	f.Fuzz(func(t *testing.T, method, path, hname, hvalue string) {
		if !validToken(method) {
			return // net/http rejects such a request line before any handler runs
		}
		var hdr []string
		if hname != "" && validToken(hname) && !strings.ContainsAny(hvalue, "\r\n\x00") {
			hdr = []string{hname, hvalue}
		}
		w := get(h, method, path, hdr...)
		switch w.Code {
		case http.StatusOK, http.StatusPartialContent, http.StatusNotModified, http.StatusNotFound,
			http.StatusMethodNotAllowed, http.StatusRequestedRangeNotSatisfiable:
		default:
			t.Fatalf("%s %q (%s: %q): status %d", method, path, hname, hvalue, w.Code)
		}
		if w.Code == http.StatusOK && method == "GET" && strings.HasSuffix(path, ".ts") &&
			(w.Body.Len() == 0 || w.Body.Len()%mpegts.PacketSize != 0 || w.Body.Bytes()[0] != mpegts.SyncByte) {
			t.Fatalf("%q: a segment of %d bytes that is not whole packets", path, w.Body.Len())
		}
	})
}

// validToken is an HTTP token (a method or header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7F || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// FuzzParseBitrate: any accepted bit rate is positive and survives formatting.
func FuzzParseBitrate(f *testing.F) {
	for _, s := range []string{"500k", "1.5M", "500000", "0.5k", "2G", "", "-1", "1e3", "9999999999999999999999k", "1.", ".5k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseBitrate(s)
		if err != nil {
			return
		}
		if v <= 0 || v > maxBitrate {
			t.Fatalf("ParseBitrate(%q) = %d", s, v)
		}
		back, err := ParseBitrate(FormatBitrate(v))
		if err != nil || back != v {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, v, FormatBitrate(v), back, err)
		}
	})
}
