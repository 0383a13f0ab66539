package origin

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirectoryIsConfined serves a directory holding files, hidden files, symlinks in
// and out, and checks what is served, with which headers, and what never is.
func TestDirectoryIsConfined(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.ts")
	must(t, os.WriteFile(secret, []byte("outside the served directory"), 0o644))

	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(body), 0o644))
	}
	write("index.m3u8", "#EXTM3U\n")
	write("master.m3u8", "#EXTM3U\n")
	write("0.ts", "segment zero")
	write("500k/index.m3u8", "#EXTM3U\n500k\n")
	write("500k/7.ts", "segment seven")
	write("init.m4s", "fmp4 part")
	write("subs.vtt", "WEBVTT")
	write(".hidden.ts", "hidden")
	write(".git/config", "[core]")
	write("notes.txt", "not HLS")
	write("index.m3u8.tmp", "being written")
	must(t, os.Mkdir(filepath.Join(dir, "folder.ts"), 0o755))
	must(t, os.Symlink(secret, filepath.Join(dir, "escape.ts")))
	must(t, os.Symlink(outside, filepath.Join(dir, "out")))
	must(t, os.Symlink("0.ts", filepath.Join(dir, "alias.ts"))) // stays inside: allowed
	must(t, os.Symlink("../"+filepath.Base(outside)+"/secret.ts", filepath.Join(dir, "relative-escape.ts")))

	s := newTestServer(t, Config{Dir: dir})
	h := s.Handler()
	for _, tc := range []struct {
		name, path  string
		code        int
		body        string // for 200
		contentType string
		cache       string
	}{
		{"a playlist", "/live/index.m3u8", 200, "#EXTM3U\n", ContentTypePlaylist, PlaylistCacheControl},
		{"the master playlist", "/live/master.m3u8", 200, "#EXTM3U\n", ContentTypePlaylist, PlaylistCacheControl},
		{"a segment", "/live/0.ts", 200, "segment zero", ContentTypeSegment, SegmentCacheControl},
		{"a rendition's playlist", "/live/500k/index.m3u8", 200, "#EXTM3U\n500k\n", ContentTypePlaylist, PlaylistCacheControl},
		{"a rendition's segment", "/live/500k/7.ts", 200, "segment seven", ContentTypeSegment, SegmentCacheControl},
		{"an fMP4 part", "/live/init.m4s", 200, "fmp4 part", "video/iso.segment", SegmentCacheControl},
		{"subtitles", "/live/subs.vtt", 200, "WEBVTT", "text/vtt; charset=utf-8", SegmentCacheControl},
		{"a symlink inside the directory", "/live/alias.ts", 200, "segment zero", ContentTypeSegment, SegmentCacheControl},
		{"a missing segment", "/live/99.ts", 404, "", "", NotFoundCacheControl},
		{"a hidden file", "/live/.hidden.ts", 404, "", "", NotFoundCacheControl},
		{"inside a hidden directory", "/live/.git/config", 404, "", "", NotFoundCacheControl},
		{"not an HLS extension", "/live/notes.txt", 404, "", "", NotFoundCacheControl},
		{"a temporary file ffmpeg is writing", "/live/index.m3u8.tmp", 404, "", "", NotFoundCacheControl},
		{"a directory", "/live/folder.ts", 404, "", "", NotFoundCacheControl},
		{"a symlink to a file outside", "/live/escape.ts", 404, "", "", NotFoundCacheControl},
		{"a relative symlink outside", "/live/relative-escape.ts", 404, "", "", NotFoundCacheControl},
		{"through a symlinked directory outside", "/live/out/secret.ts", 404, "", "", NotFoundCacheControl},
		{"dot-dot traversal", "/live/../" + filepath.Base(outside) + "/secret.ts", 404, "", "", NotFoundCacheControl},
		{"dot-dot inside", "/live/500k/../0.ts", 404, "", "", NotFoundCacheControl},
		{"an absolute path", "/live//etc/hostname.ts", 404, "", "", NotFoundCacheControl},
		{"outside /live", "/0.ts", 404, "", "", NotFoundCacheControl},
		{"a backslash", "/live/500k\\7.ts", 404, "", "", NotFoundCacheControl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := get(h, "GET", tc.path)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.code, strings.TrimSpace(w.Body.String()))
			}
			if got := w.Header().Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q, want %q", got, tc.cache)
			}
			if strings.Contains(w.Body.String(), "outside the served directory") {
				t.Fatal("served a file from outside the directory")
			}
			if tc.code != 200 {
				return
			}
			if w.Body.String() != tc.body {
				t.Errorf("body %q, want %q", w.Body, tc.body)
			}
			if got := w.Header().Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
		})
	}

	// Playlists revalidate by ETag, and a rewrite changes it.
	first := get(h, "GET", "/live/index.m3u8")
	etag := first.Header().Get("Etag")
	if first.Header().Get("Last-Modified") != "" || etag == "" {
		t.Fatalf("playlist validators: Last-Modified %q, ETag %q", first.Header().Get("Last-Modified"), etag)
	}
	if w := get(h, "GET", "/live/index.m3u8", "If-None-Match", etag); w.Code != http.StatusNotModified {
		t.Fatalf("unchanged playlist with its ETag: %d", w.Code)
	}
	write("index.m3u8", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n")
	if w := get(h, "GET", "/live/index.m3u8", "If-None-Match", etag); w.Code != http.StatusOK {
		t.Fatalf("rewritten playlist with the old ETag: %d, want 200", w.Code)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if w := get(h, "GET", "/live/0.ts"); w.Code != http.StatusNotFound {
		t.Fatalf("after Close: %d, want 404", w.Code)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
