package mirror

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/servers/origin"
)

// lastURI returns the last URI line of a playlist.
func lastURI(t *testing.T, playlist string) string {
	t.Helper()
	last := ""
	for _, l := range strings.Split(playlist, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			last = l
		}
	}
	if last == "" {
		t.Fatalf("no URI in playlist:\n%s", playlist)
	}
	return last
}

// resolve makes a playlist URI absolute against the playlist's path.
func resolveURI(playlistPath, uri string) string {
	if strings.HasPrefix(uri, "/") {
		return uri
	}
	return playlistPath[:strings.LastIndexByte(playlistPath, '/')+1] + uri
}

func TestMirrorsTheRealOrigin(t *testing.T) {
	t.Parallel()
	o, err := origin.New(origin.Config{SegmentDuration: time.Second, Window: 4,
		Epoch: time.Now().Add(-10 * time.Second).Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	up := httptest.NewServer(o.Handler())
	t.Cleanup(up.Close)
	fake := clock.NewFake(time.Now())
	s, base := startMirror(t, Config{Upstream: up.URL, Clock: fake})

	master := get(t, base+"/live/master.m3u8")
	if master.status != 200 || !strings.HasPrefix(master.body, "#EXTM3U") {
		t.Fatalf("master: %d %q", master.status, master.body)
	}
	mediaPath := resolveURI("/live/master.m3u8", lastURI(t, master.body))
	media := get(t, base+mediaPath)
	segPath := resolveURI(mediaPath, lastURI(t, media.body))
	seg := get(t, base+segPath)
	direct := get(t, up.URL+segPath)
	if seg.status != 200 || seg.body != direct.body || len(seg.body) < 188 || seg.body[0] != 0x47 {
		t.Fatalf("segment through the mirror: %d, %d bytes (origin: %d)", seg.status, len(seg.body), len(direct.body))
	}
	if seg.header.Get("Content-Type") != direct.header.Get("Content-Type") {
		t.Fatalf("Content-Type %q, origin says %q", seg.header.Get("Content-Type"), direct.header.Get("Content-Type"))
	}
	if again := get(t, base+segPath); again.cache != "HIT" || again.body != direct.body {
		t.Fatalf("second fetch: %s", again.cache)
	}
	// The origin stops; after the playlist TTL the mirror still answers with the last
	// good playlist, marked stale.
	up.Close()
	fake.Advance(DefaultPlaylistTTL)
	stale := get(t, base+mediaPath)
	if stale.status != 200 || stale.cache != "STALE" || stale.body != media.body {
		t.Fatalf("origin stopped: %d %s", stale.status, stale.cache)
	}
	if s.countOf(kindPlaylist, resultStale) != 1 {
		t.Fatal("stale not counted")
	}
}
