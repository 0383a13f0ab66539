package mirror

import (
	"net/http"
	"strings"
)

// kind is what an object is to an HLS player; it picks the TTL and labels metrics.
type kind uint8

const (
	kindPlaylist kind = iota // .m3u8
	kindSegment              // media segments and init sections
	kindOther                // anything else: streamed through, never cached
	numKinds
)

var kindNames = [numKinds]string{"playlist", "segment", "other"}

func (k kind) String() string { return kindNames[k] }

// segmentExts are the media files HLS players fetch besides playlists (RFC 8216 §3).
var segmentExts = []string{".ts", ".m4s", ".mp4", ".m4a", ".m4v", ".aac", ".ac3", ".ec3", ".mp3", ".vtt", ".webvtt", ".key"}

// kindOf classifies a URL path by its extension.
func kindOf(path string) kind {
	dot := strings.LastIndexByte(path, '.')
	if dot < 0 || strings.IndexByte(path[dot:], '/') >= 0 {
		return kindOther
	}
	ext := path[dot:]
	if strings.EqualFold(ext, ".m3u8") {
		return kindPlaylist
	}
	for _, e := range segmentExts {
		if strings.EqualFold(ext, e) {
			return kindSegment
		}
	}
	return kindOther
}

// result is what the cache did for one request (the `result` metric label).
type result uint8

const (
	resultHit       result = iota // served from a fresh cached copy
	resultMiss                    // started an upstream fetch
	resultCoalesced               // joined a fetch another request started
	resultStale                   // upstream failed or was slow: served the last good copy
	resultBypass                  // not cacheable (too large, or not HLS): streamed through
	numResults
)

var resultNames = [numResults]string{"hit", "miss", "coalesced", "stale", "bypass"}

// xCache values, prebuilt so the hit path does not allocate them.
var xCache = [numResults][]string{{"HIT"}, {"MISS"}, {"COALESCED"}, {"STALE"}, {"BYPASS"}}

// Reasons a request is refused before it reaches the cache (the `reason` label).
const (
	rejectMethod   = "method"    // not GET or HEAD
	rejectNotProxy = "not_proxy" // absolute-form or authority-form target: an open-proxy attempt
	rejectPath     = "path"      // a path that is not a clean absolute path
)

// maxRequestURI bounds the request target the mirror forwards.
const maxRequestURI = 4096

// checkRequest decides whether r may be forwarded upstream. It returns the cache key
// (the request target exactly as the client sent it, like nginx's $request_uri) or the
// status and reason to refuse it with. The mirror forwards only origin-form targets
// ("/path?query") to its one upstream, so it can never be used as an open proxy.
func checkRequest(r *http.Request) (key string, k kind, status int, reason string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return "", kindOther, http.StatusMethodNotAllowed, rejectMethod
	}
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' || r.URL == nil || r.URL.IsAbs() || r.URL.Host != "" {
		return "", kindOther, http.StatusForbidden, rejectNotProxy
	}
	if len(uri) > maxRequestURI || !cleanPath(r.URL.Path) || !cleanTarget(uri) {
		return "", kindOther, http.StatusBadRequest, rejectPath
	}
	return uri, kindOf(r.URL.Path), 0, ""
}

// cleanPath accepts an absolute path without empty, "." or ".." segments, backslashes
// or control characters (checked on the decoded path, so %2e%2e is caught too).
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(p, "//")
}

// cleanTarget checks the raw target: printable ASCII only, and no "//" that an upstream
// could read as an authority.
func cleanTarget(uri string) bool {
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	path, _, _ := strings.Cut(uri, "?")
	return !strings.Contains(path, "//")
}
