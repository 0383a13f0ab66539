package origin

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/stampede-live/stampede/internal/serverkit"
)

// Header values shared by every response (assigned, never appended to).
var (
	hdrPlaylistType = []string{ContentTypePlaylist}
	hdrSegmentType  = []string{ContentTypeSegment}
	hdrPlaylistCC   = []string{PlaylistCacheControl}
	hdrSegmentCC    = []string{SegmentCacheControl}
	hdrNoStore      = []string{NotFoundCacheControl}
	hdrAnyOrigin    = []string{"*"}
	hdrText         = []string{"text/plain; charset=utf-8"}
	hdrNoSniff      = []string{"nosniff"}
	hdrAllow        = []string{"GET, HEAD"}
)

// route is what a request path names.
type route struct {
	kind      kind
	rendition string // playlist, segment: the rendition name
	seq       int64  // segment: the media sequence number
	file      string // directory mode: the path below the directory
}

// Limits on path elements, so hostile paths are refused before any work.
const (
	maxRenditionName = 32
	maxSeqDigits     = 18 // below int64 overflow; far beyond any live edge
)

// parseRoute maps a URL path to what it names in the synthetic layout:
//
//	/live/master.m3u8            master
//	/live/{rendition}/index.m3u8 playlist
//	/live/{rendition}/{N}.ts     segment (N canonical decimal: no sign, no leading zeros)
//	/metrics, /healthz
//
// Anything else is kindOther. It does not check that the rendition exists.
func parseRoute(p string) route {
	switch p {
	case "/metrics":
		return route{kind: kindMetrics}
	case "/healthz":
		return route{kind: kindHealthz}
	case "/live/master.m3u8":
		return route{kind: kindMaster}
	}
	rest, ok := strings.CutPrefix(p, "/live/")
	if !ok {
		return route{kind: kindOther}
	}
	name, file, ok := strings.Cut(rest, "/")
	if !ok || !validRenditionName(name) {
		return route{kind: kindOther}
	}
	if file == "index.m3u8" {
		return route{kind: kindPlaylist, rendition: name}
	}
	digits, ok := strings.CutSuffix(file, ".ts")
	if !ok {
		return route{kind: kindOther}
	}
	seq, ok := parseSeq(digits)
	if !ok {
		return route{kind: kindOther}
	}
	return route{kind: kindSegment, rendition: name, seq: seq}
}

func validRenditionName(s string) bool {
	if s == "" || len(s) > maxRenditionName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// parseSeq reads a canonical non-negative decimal (one name per segment, so caches never
// hold "007.ts" beside "7.ts").
func parseSeq(s string) (int64, bool) {
	if s == "" || len(s) > maxSeqDigits || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// fileTypes maps the extensions served from a directory to kind and content type.
var fileTypes = map[string]struct {
	kind        kind
	contentType string
}{
	".m3u8": {kindPlaylist, ContentTypePlaylist},
	".ts":   {kindSegment, ContentTypeSegment},
	".m4s":  {kindSegment, "video/iso.segment"},
	".mp4":  {kindSegment, "video/mp4"},
	".m4a":  {kindSegment, "audio/mp4"},
	".aac":  {kindSegment, "audio/aac"},
	".vtt":  {kindSegment, "text/vtt; charset=utf-8"},
}

const maxFilePath = 1024

// parseFileRoute maps a URL path to a file below the served directory: /live/{path}
// where every element is a plain name (not empty, no leading dot, no backslash or NUL)
// and the extension is an HLS one. Anything else is kindOther.
func parseFileRoute(p string) route {
	switch p {
	case "/metrics":
		return route{kind: kindMetrics}
	case "/healthz":
		return route{kind: kindHealthz}
	}
	rest, ok := strings.CutPrefix(p, "/live/")
	if !ok || rest == "" || len(rest) > maxFilePath {
		return route{kind: kindOther}
	}
	for elem := range strings.SplitSeq(rest, "/") {
		if elem == "" || elem[0] == '.' || strings.ContainsAny(elem, "\\\x00") {
			return route{kind: kindOther}
		}
	}
	ft, ok := fileTypes[path.Ext(rest)]
	if !ok {
		return route{kind: kindOther}
	}
	k := ft.kind
	if path.Base(rest) == "master.m3u8" {
		k = kindMaster
	}
	return route{kind: k, file: rest}
}

// serveHTTP is the origin's handler.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	var rt route
	if s.live != nil {
		rt = parseRoute(r.URL.Path)
	} else {
		rt = parseFileRoute(r.URL.Path)
	}
	code, n := s.serve(w, r, rt)
	s.metrics.observe(rt.kind, code, n, time.Since(start))
}

// serve answers one request and returns the status and body bytes written.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rt route) (int, int64) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = hdrAllow
		return plainError(w, http.StatusMethodNotAllowed, r.Method+" not allowed: use GET or HEAD")
	}
	switch rt.kind {
	case kindMetrics:
		return counted(w, r, s.metricsHandler)
	case kindHealthz:
		if s.ff != nil && !s.ff.running() {
			return plainError(w, http.StatusServiceUnavailable, "ffmpeg is not running: "+s.ff.exitReason())
		}
		return counted(w, r, http.HandlerFunc(serverkit.Healthz))
	case kindOther:
		return plainError(w, http.StatusNotFound, "not found: "+quote(r.URL.Path)+"; the stream is at /live/master.m3u8")
	}
	if s.files != nil {
		return s.serveFile(w, r, rt)
	}
	ls := s.live
	switch rt.kind {
	case kindMaster:
		return writeResponse(w, r, ls.master, hdrPlaylistType, hdrPlaylistCC)
	case kindPlaylist:
		rend := ls.rendition(rt.rendition)
		if rend == nil {
			return s.noRendition(w, rt.rendition)
		}
		p := ls.mediaPlaylist(rend, ls.clock.Now())
		if p == nil {
			return plainError(w, http.StatusNotFound, fmt.Sprintf("the stream has not started: its first segment is published at %s",
				ls.tl.published(0).UTC().Format(time.RFC3339Nano)))
		}
		return writeResponse(w, r, p.response, hdrPlaylistType, hdrPlaylistCC)
	case kindSegment:
		rend := ls.rendition(rt.rendition)
		if rend == nil {
			return s.noRendition(w, rt.rendition)
		}
		latest := ls.tl.latest(ls.clock.Now())
		if !ls.tl.available(rt.seq, latest) {
			return plainError(w, http.StatusNotFound, segmentGone(rt.seq, latest, ls.tl.oldest(latest)))
		}
		seg, err := ls.segment(rend, rt.seq)
		if err != nil {
			s.log.Error("building segment", "rendition", rend.name, "seq", rt.seq, "err", err)
			return plainError(w, http.StatusInternalServerError, "could not build the segment")
		}
		if len(r.Header["Range"]) > 0 {
			h := w.Header()
			h["Content-Type"] = hdrSegmentType
			h["Cache-Control"] = hdrSegmentCC
			h["Etag"] = seg.etag
			h["Access-Control-Allow-Origin"] = hdrAnyOrigin
			return counted(w, r, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.ServeContent(w, r, "", seg.published, bytes.NewReader(seg.body))
			}))
		}
		return writeResponse(w, r, seg.response, hdrSegmentType, hdrSegmentCC)
	}
	return plainError(w, http.StatusNotFound, "not found")
}

func segmentGone(seq, latest, oldest int64) string {
	switch {
	case latest < 0:
		return fmt.Sprintf("segment %d is not published yet: the stream has not started", seq)
	case seq > latest:
		return fmt.Sprintf("segment %d is not published yet: the live edge is %d", seq, latest)
	}
	return fmt.Sprintf("segment %d is gone: the oldest still served is %d (live edge %d)", seq, oldest, latest)
}

func (s *Server) noRendition(w http.ResponseWriter, name string) (int, int64) {
	names := make([]string, len(s.live.renditions))
	for i, r := range s.live.renditions {
		names[i] = r.name
	}
	return plainError(w, http.StatusNotFound, fmt.Sprintf("no rendition %s; there are %s", quote(name), strings.Join(names, ", ")))
}

// writeResponse serves a precomputed response: 304 when the client already holds it
// (If-None-Match naming its ETag, or If-Modified-Since repeating its Last-Modified),
// else the body.
func writeResponse(w http.ResponseWriter, r *http.Request, resp *response, contentType, cacheControl []string) (int, int64) {
	h := w.Header()
	h["Content-Type"] = contentType
	h["Cache-Control"] = cacheControl
	h["Etag"] = resp.etag
	h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	if resp.lastModified != nil {
		h["Last-Modified"] = resp.lastModified
	}
	if notModified(r, resp) {
		delete(h, "Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return http.StatusNotModified, 0
	}
	h["Content-Length"] = resp.contentLength
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return http.StatusOK, 0
	}
	n, _ := w.Write(resp.body)
	return http.StatusOK, int64(n)
}

// notModified reports whether the client already holds resp: an If-None-Match naming
// its ETag (or "*"), or, without one, an If-Modified-Since repeating its Last-Modified
// exactly (what caches send back).
func notModified(r *http.Request, resp *response) bool {
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		for _, v := range inm {
			if strings.TrimSpace(v) == "*" || strings.Contains(v, resp.etag[0]) {
				return true
			}
		}
		return false
	}
	ims := r.Header["If-Modified-Since"]
	return len(ims) > 0 && resp.lastModified != nil && ims[0] == resp.lastModified[0]
}

// plainError writes a short text error that no cache keeps.
func plainError(w http.ResponseWriter, code int, msg string) (int, int64) {
	h := w.Header()
	h["Content-Type"] = hdrText
	h["X-Content-Type-Options"] = hdrNoSniff
	h["Cache-Control"] = hdrNoStore
	h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	delete(h, "Etag")
	delete(h, "Last-Modified")
	w.WriteHeader(code)
	n, _ := io.WriteString(w, msg+"\n")
	return code, int64(n)
}

// quote renders untrusted input for a message, shortened.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}

// countingWriter records the status and body bytes of a handler we do not write
// ourselves (http.ServeContent, promhttp). ReadFrom keeps sendfile for files.
type countingWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.bytes += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.bytes += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.bytes += n
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

var (
	_ http.ResponseWriter = (*countingWriter)(nil)
	_ io.ReaderFrom       = (*countingWriter)(nil)
)

func counted(w http.ResponseWriter, r *http.Request, h http.Handler) (int, int64) {
	cw := &countingWriter{ResponseWriter: w}
	h.ServeHTTP(cw, r)
	if cw.code == 0 {
		cw.code = http.StatusOK
	}
	return cw.code, cw.bytes
}
