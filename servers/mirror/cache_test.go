package mirror

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// versioned serves every path with a body that changes on each request, so a test can
// tell a cached copy ("v1") from a refetch ("v2").
func versioned(t *testing.T) *upstream {
	var n atomic.Int64
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s v%d", r.URL.Path, n.Add(1))
	})
}

func TestTTLPerKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path string
		cfg        Config
		fresh      time.Duration // still a hit just before this
	}{
		// playlists default to 1 s, as the relay's nginx did
		{"playlist default", "/live/500k/index.m3u8", Config{}, DefaultPlaylistTTL},
		// segments default to 60 s
		{"segment default", "/live/500k/7.ts", Config{}, DefaultSegmentTTL},
		// per-kind TTLs are configurable independently
		{"playlist 250ms", "/live/master.m3u8", Config{PlaylistTTL: 250 * time.Millisecond, SegmentTTL: time.Hour}, 250 * time.Millisecond},
		{"segment 5s", "/live/500k/init.mp4", Config{PlaylistTTL: time.Hour, SegmentTTL: 5 * time.Second}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := versioned(t)
			fake := clock.NewFake(epoch)
			cfg := tc.cfg
			cfg.Upstream, cfg.Clock = up.URL, fake
			_, base := startMirror(t, cfg)
			if r := get(t, base+tc.path); r.status != 200 || r.cache != "MISS" || !strings.HasSuffix(r.body, "v1") {
				t.Fatalf("first GET: %+v", r)
			}
			fake.Advance(tc.fresh - time.Millisecond)
			if r := get(t, base+tc.path); r.cache != "HIT" || !strings.HasSuffix(r.body, "v1") {
				t.Fatalf("GET %v later: %+v, want a hit on v1", tc.fresh-time.Millisecond, r)
			}
			fake.Advance(time.Millisecond)
			if r := get(t, base+tc.path); r.cache != "MISS" || !strings.HasSuffix(r.body, "v2") {
				t.Fatalf("GET at TTL: %+v, want a refetch (v2)", r)
			}
			if n := up.requests(tc.path); n != 2 {
				t.Fatalf("upstream saw %d requests, want 2", n)
			}
		})
	}
}

func TestHonorCacheControl(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", r.URL.Query().Get("cc"))
		fmt.Fprintf(w, "v%d", n.Add(1))
	})
	for _, tc := range []struct {
		name   string
		honor  bool
		cc     string
		wantV2 time.Duration // first instant the second GET refetches
	}{
		{"ignored by default", false, "max-age=30", DefaultSegmentTTL},               // per-kind TTL wins
		{"max-age honoured", true, "max-age=30", 30 * time.Second},                   // upstream's word
		{"s-maxage over max-age", true, "max-age=30, s-maxage=3", 3 * time.Second},   // shared-cache directive first
		{"no-store not cached", true, "no-store", 0},                                 // never kept
		{"unreadable falls back", true, "max-age=soon", DefaultSegmentTTL},           // bad value: per-kind TTL
		{"quoted value", true, `max-age="7"`, 7 * time.Second},                       // tolerated quoting
		{"private not cached", true, "private, max-age=60", 0},                       // a shared cache must not keep it
		{"no cache-control", true, "", DefaultSegmentTTL},                            // nothing said: per-kind TTL
		{"zero max-age revalidates", true, "max-age=0", 0},                           // stale at once
		{"huge max-age is capped", true, "max-age=999999999999", maxCacheControlAge}, // a year at most
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := clock.NewFake(epoch)
			_, base := startMirror(t, Config{Upstream: up.URL, Clock: fake, HonorCacheControl: tc.honor})
			url := base + "/seg.ts?cc=" + strings.ReplaceAll(strings.ReplaceAll(tc.cc, " ", "%20"), `"`, "%22")
			first := get(t, url)
			if tc.wantV2 > 0 {
				fake.Advance(tc.wantV2 - time.Millisecond)
				if r := get(t, url); r.body != first.body {
					t.Fatalf("refetched at %v, want a hit until %v", tc.wantV2-time.Millisecond, tc.wantV2)
				}
				fake.Advance(time.Millisecond)
			}
			if r := get(t, url); r.body == first.body {
				t.Fatalf("still cached at %v", tc.wantV2)
			}
		})
	}
}

func TestNegativeCaching(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		negativeTTL time.Duration
	}{
		{"default: a 404 is not pinned", 0},             // the segment asked for a moment early is served once published
		{"negative TTL holds the 404", 5 * time.Second}, // when asked to, 404 is cached for that long
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var published atomic.Bool
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if !published.Load() {
					http.NotFound(w, r)
					return
				}
				w.Write([]byte("segment"))
			})
			fake := clock.NewFake(epoch)
			_, base := startMirror(t, Config{Upstream: up.URL, Clock: fake, NegativeTTL: tc.negativeTTL})
			if r := get(t, base+"/live/9.ts"); r.status != 404 {
				t.Fatalf("before publication: %d", r.status)
			}
			published.Store(true)
			r := get(t, base+"/live/9.ts")
			if tc.negativeTTL == 0 {
				if r.status != 200 {
					t.Fatalf("just after publication: %d, want 200 (404 must not be cached)", r.status)
				}
				return
			}
			if r.status != 404 || r.cache != "HIT" {
				t.Fatalf("within negative TTL: %d %s, want a cached 404", r.status, r.cache)
			}
			fake.Advance(tc.negativeTTL)
			if r := get(t, base+"/live/9.ts"); r.status != 200 {
				t.Fatalf("after negative TTL: %d, want 200", r.status)
			}
			if n := up.requests("/live/9.ts"); n != 2 {
				t.Fatalf("upstream saw %d requests, want 2", n)
			}
		})
	}
}

func TestLRUEvictionByBytes(t *testing.T) {
	t.Parallel()
	const objSize = 10_000
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write(segment(objSize)) })
	// Room for three objects (each ~10.3 KB with key and headers), not four.
	s, base := startMirror(t, Config{Upstream: up.URL, CacheSize: 35_000})
	for _, p := range []string{"/a.ts", "/b.ts", "/c.ts"} {
		get(t, base+p)
	}
	if r := get(t, base+"/a.ts"); r.cache != "HIT" { // a is now the most recently used
		t.Fatalf("a: %s", r.cache)
	}
	get(t, base+"/d.ts") // evicts b, the least recently used
	for _, tc := range []struct {
		path string
		want string
	}{{"/a.ts", "HIT"}, {"/c.ts", "HIT"}, {"/d.ts", "HIT"}, {"/b.ts", "MISS"}} {
		if r := get(t, base+tc.path); r.cache != tc.want {
			t.Errorf("%s: %s, want %s", tc.path, r.cache, tc.want)
		}
	}
	bytes, objects := s.cacheStats()
	if bytes > 35_000 || objects != 3 {
		t.Errorf("cache holds %d bytes in %d objects, want ≤ 35000 in 3", bytes, objects)
	}
	if ev := value(s.m.evictions); ev != 2 {
		t.Errorf("evictions = %v, want 2 (b for d, then a for b)", ev)
	}
}

func TestStaleIfError(t *testing.T) {
	t.Parallel()
	t.Run("upstream stopped", func(t *testing.T) {
		t.Parallel()
		up := versioned(t)
		fake := clock.NewFake(epoch)
		s, base := startMirror(t, Config{Upstream: up.URL, Clock: fake})
		const p = "/live/500k/index.m3u8"
		good := get(t, base+p)
		up.Close() // the origin dies
		fake.Advance(DefaultPlaylistTTL)
		r := get(t, base+p)
		if r.status != 200 || r.cache != "STALE" || r.body != good.body {
			t.Fatalf("with the upstream down: %+v, want the last good playlist marked STALE", r)
		}
		// Within the hold-off the upstream is not asked again.
		before := value(s.m.upstreamRequests.WithLabelValues("playlist", outcomeError))
		if r := get(t, base+p); r.cache != "STALE" {
			t.Fatalf("second request: %s", r.cache)
		}
		if after := value(s.m.upstreamRequests.WithLabelValues("playlist", outcomeError)); after != before {
			t.Fatalf("upstream asked again within the hold-off (%v → %v)", before, after)
		}
		if n := s.countOf(kindPlaylist, resultStale); n != 2 {
			t.Fatalf("stale count %d, want 2", n)
		}
	})
	t.Run("off: 502", func(t *testing.T) {
		t.Parallel()
		up := versioned(t)
		fake := clock.NewFake(epoch)
		_, base := startMirror(t, Config{Upstream: up.URL, Clock: fake, StaleIfError: -1})
		get(t, base+"/index.m3u8")
		up.Close()
		fake.Advance(time.Second)
		if r := get(t, base+"/index.m3u8"); r.status != http.StatusBadGateway {
			t.Fatalf("stale-if-error off, upstream down: %d, want 502", r.status)
		}
	})
	t.Run("upstream 5xx", func(t *testing.T) {
		t.Parallel()
		var broken atomic.Bool
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			if broken.Load() {
				http.Error(w, "disk full", http.StatusInternalServerError)
				return
			}
			w.Write([]byte("good"))
		})
		fake := clock.NewFake(epoch)
		_, base := startMirror(t, Config{Upstream: up.URL, Clock: fake})
		get(t, base+"/index.m3u8")
		broken.Store(true)
		fake.Advance(time.Second)
		if r := get(t, base+"/index.m3u8"); r.status != 200 || r.body != "good" || r.cache != "STALE" {
			t.Fatalf("upstream 500: %+v, want stale good copy", r)
		}
	})
	t.Run("upstream slow", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		var n atomic.Int64
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 2 {
				<-release
			}
			fmt.Fprintf(w, "v%d", n.Load())
		})
		fake := clock.NewFake(epoch)
		_, base := startMirror(t, Config{Upstream: up.URL, Clock: fake, StaleIfError: 3 * time.Second})
		get(t, base+"/index.m3u8")
		fake.Advance(time.Second)
		got := make(chan response, 1)
		go func() { got <- get(t, base+"/index.m3u8") }()
		if !fake.WaitTimers(1, 20*time.Second) {
			t.Fatal("the request never started waiting on the slow upstream")
		}
		fake.Advance(3 * time.Second)
		if r := <-got; r.body != "v1" || r.cache != "STALE" {
			t.Fatalf("slow upstream: %+v, want v1 STALE", r)
		}
		close(release) // the fetch finishes in the background and refreshes the cache
		waitFor(t, "the late fetch to land in the cache", 20*time.Second, func() bool {
			return get(t, base+"/index.m3u8").body == "v2"
		})
	})
}

func TestStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var n atomic.Int64
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			<-release // the refresh is slow
		}
		fmt.Fprintf(w, "v%d", n.Load())
	})
	fake := clock.NewFake(epoch)
	_, base := startMirror(t, Config{Upstream: up.URL, Clock: fake, StaleWhileRevalidate: 5 * time.Second})
	get(t, base+"/index.m3u8")
	fake.Advance(time.Second)
	// Expired: answered at once from the old copy while the refresh hangs upstream.
	for range 3 {
		if r := get(t, base+"/index.m3u8"); r.body != "v1" || r.cache != "STALE" {
			t.Fatalf("within stale-while-revalidate: %+v, want v1 STALE without waiting", r)
		}
	}
	close(release)
	waitFor(t, "the background refresh", 20*time.Second, func() bool {
		r := get(t, base+"/index.m3u8")
		return r.body == "v2" && r.cache == "HIT"
	})
	if c := up.requests("/index.m3u8"); c != 2 {
		t.Fatalf("upstream requests %d, want 2 (one refresh for all stale answers)", c)
	}
	// Past the window a request waits for the fresh copy again.
	fake.Advance(time.Second + 5*time.Second)
	if r := get(t, base+"/index.m3u8"); r.body != "v3" || r.cache != "MISS" {
		t.Fatalf("past the window: %+v, want v3 MISS", r)
	}
}
