package origin

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTimelineLatest(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    time.Duration
		at   time.Duration // time since the epoch
		want int64
	}{
		{"an hour before the epoch: nothing", 2 * time.Second, -time.Hour, -1},
		{"at the epoch segment 0 is still being recorded", 2 * time.Second, 0, -1},
		{"one nanosecond before segment 0 ends", 2 * time.Second, 2*time.Second - 1, -1},
		{"segment 0 is published exactly at its end", 2 * time.Second, 2 * time.Second, 0},
		{"mid-way through segment 1", 2 * time.Second, 3 * time.Second, 0},
		{"three hours in", 2 * time.Second, 3 * time.Hour, 5399},
		{"three hours in, just before the next", 2 * time.Second, 3*time.Hour + 2*time.Second - 1, 5399},
		{"past the 26.5 h wrap of 33-bit timestamps", 2 * time.Second, 27 * time.Hour, 48599},
		{"1.5 s segments, one hour in", 1500 * time.Millisecond, time.Hour, 2399},
		{"100 ms segments, one day in", 100 * time.Millisecond, 24 * time.Hour, 863999},
		{"a year of 2 s segments", 2 * time.Second, 365 * 24 * time.Hour, 15767999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTimeline(testEpoch, tc.d, 6)
			if got := tl.latest(testEpoch.Add(tc.at)); got != tc.want {
				t.Fatalf("latest at epoch%+v = %d, want %d", tc.at, got, tc.want)
			}
		})
	}
}

func TestTimelineWindow(t *testing.T) {
	const w = 6
	tl := newTimeline(testEpoch, 2*time.Second, w)
	for _, tc := range []struct {
		name          string
		latest        int64
		first, oldest int64
	}{
		{"first segment alone", 0, 0, 0},
		{"window not yet full", 4, 0, 0},
		{"window just full", 5, 0, 0},
		{"window slides by one", 6, 1, 0},
		{"grace reaches back to segment 0 for the last time", 12, 7, 0},
		{"segment 0 finally gone", 13, 8, 1},
		{"three hours in", 5399, 5394, 5387},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tl.first(tc.latest); got != tc.first {
				t.Errorf("first(%d) = %d, want %d", tc.latest, got, tc.first)
			}
			if got := tl.oldest(tc.latest); got != tc.oldest {
				t.Errorf("oldest(%d) = %d, want %d", tc.latest, got, tc.oldest)
			}
			for n := tc.oldest - 2; n <= tc.latest+2; n++ {
				want := n >= tc.oldest && n <= tc.latest && n >= 0
				if got := tl.available(n, tc.latest); got != want {
					t.Errorf("available(%d, latest %d) = %v, want %v", n, tc.latest, got, want)
				}
			}
		})
	}
}

// TestRemovalGracePeriod walks one segment through its life over HTTP, on a fake clock,
// against RFC 8216 §6.2.2 stated in time: segment n leaves the playlist at
// R = epoch + (n+window+1)·d and must stay downloadable until R + d + window·d.
func TestRemovalGracePeriod(t *testing.T) {
	const (
		d = 2 * time.Second
		w = 6
		n = 1000 // a segment well into the stream
	)
	s, fc := fakeServer(t, Config{SegmentDuration: d, Window: w})
	h := s.Handler()
	published := testEpoch.Add((n + 1) * d)
	removed := testEpoch.Add((n + w + 1) * d)
	gone := removed.Add(d + w*d)
	for _, tc := range []struct {
		name                     string
		at                       time.Time
		inPlaylist, downloadable bool
	}{
		{"while it is being recorded", published.Add(-1), false, false},
		{"the instant it is published", published, true, true},
		{"just before it slides out", removed.Add(-1), true, true},
		{"the instant it slides out", removed, false, true},
		{"a segment duration into the grace period", removed.Add(d), false, true},
		{"the last nanosecond of the grace period", gone.Add(-1), false, true},
		{"the grace period is over", gone, false, false},
		{"an hour later", gone.Add(time.Hour), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc.Set(tc.at)
			pl := get(h, "GET", "/live/500k/index.m3u8")
			if pl.Code != http.StatusOK {
				t.Fatalf("playlist: %d %s", pl.Code, pl.Body)
			}
			listed := bytes.Contains(pl.Body.Bytes(), []byte("\n"+strconv.Itoa(n)+".ts\n"))
			if listed != tc.inPlaylist {
				t.Errorf("segment %d listed = %v, want %v\n%s", n, listed, tc.inPlaylist, pl.Body)
			}
			seg := get(h, "GET", "/live/500k/"+strconv.Itoa(n)+".ts")
			if got := seg.Code == http.StatusOK; got != tc.downloadable {
				t.Errorf("segment %d: status %d, want downloadable=%v (%s)", n, seg.Code, tc.downloadable, strings.TrimSpace(seg.Body.String()))
			}
			if !tc.downloadable && seg.Header().Get("Cache-Control") != NotFoundCacheControl {
				t.Errorf("404 Cache-Control = %q", seg.Header().Get("Cache-Control"))
			}
		})
	}
}

// playlistInfo is what tests read back from a media playlist.
type playlistInfo struct {
	target, sequence int
	segments         []int       // sequence numbers named by URI
	dates            []time.Time // EXT-X-PROGRAM-DATE-TIME before each
	durations        []string    // EXTINF values
}

func parsePlaylist(t testing.TB, body []byte) playlistInfo {
	t.Helper()
	var p playlistInfo
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			p.target, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-TARGETDURATION:"))
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			p.sequence, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"))
		case strings.HasPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"):
			ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"))
			if err != nil {
				t.Fatalf("bad date line %q: %v", line, err)
			}
			p.dates = append(p.dates, ts)
		case strings.HasPrefix(line, "#EXTINF:"):
			p.durations = append(p.durations, strings.TrimSuffix(strings.TrimPrefix(line, "#EXTINF:"), ","))
		case line != "" && !strings.HasPrefix(line, "#"):
			n, err := strconv.Atoi(strings.TrimSuffix(line, ".ts"))
			if err != nil || !strings.HasSuffix(line, ".ts") {
				t.Fatalf("bad segment URI %q", line)
			}
			p.segments = append(p.segments, n)
		}
	}
	return p
}

// TestPlaylistFollowsTheClock checks every playlist rule at many instants: the window,
// the sequence numbers, program dates on the wall clock, durations and target duration.
func TestPlaylistFollowsTheClock(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      time.Duration
		window int
	}{
		{"defaults", 2 * time.Second, 6},
		{"1.5 s segments round the target up to 2", 1500 * time.Millisecond, 6},
		{"2.5 s segments need a window of 4", 2500 * time.Millisecond, 4},
		{"sub-second segments", 500 * time.Millisecond, 6},
		{"a long window", 4 * time.Second, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, fc := fakeServer(t, Config{SegmentDuration: tc.d, Window: tc.window})
			h := s.Handler()
			target := int((tc.d + time.Second - 1) / time.Second)
			lastSeq := -1
			// Step by an odd amount so instants fall everywhere inside segments, across hours.
			step := tc.d*7/3 + 13*time.Millisecond
			for at := tc.d; at < 3*time.Hour; at += step * 97 {
				fc.Set(testEpoch.Add(at))
				w := get(h, "GET", "/live/500k/index.m3u8")
				if w.Code != http.StatusOK {
					t.Fatalf("at %v: %d", at, w.Code)
				}
				p := parsePlaylist(t, w.Body.Bytes())
				latest := int(at/tc.d) - 1
				wantFirst := max(0, latest-tc.window+1)
				if p.sequence != wantFirst || len(p.segments) != latest-wantFirst+1 {
					t.Fatalf("at %v: sequence %d with %d segments, want %d..%d", at, p.sequence, len(p.segments), wantFirst, latest)
				}
				if p.sequence < lastSeq {
					t.Fatalf("media sequence went back from %d to %d", lastSeq, p.sequence)
				}
				lastSeq = p.sequence
				if p.target != target {
					t.Fatalf("target duration %d, want %d", p.target, target)
				}
				if len(p.segments) == tc.window && time.Duration(len(p.segments))*tc.d < 3*time.Duration(target)*time.Second {
					t.Fatalf("a full playlist lasts less than three target durations")
				}
				for i, n := range p.segments {
					if n != p.sequence+i {
						t.Fatalf("segment %d named %d, want %d", i, n, p.sequence+i)
					}
					if want := testEpoch.Add(time.Duration(n) * tc.d); !p.dates[i].Equal(want) {
						t.Fatalf("segment %d date %v, want %v", n, p.dates[i], want)
					}
					if p.durations[i] != formatSeconds(tc.d) {
						t.Fatalf("EXTINF %s, want %s", p.durations[i], formatSeconds(tc.d))
					}
				}
			}
		})
	}
}

func TestLiveEdgeNeverGoesBack(t *testing.T) {
	c := &steppingClock{now: testEpoch.Add(100 * time.Second)}
	s := newTestServer(t, Config{Clock: c, Epoch: testEpoch})
	h := s.Handler()
	before := parsePlaylist(t, get(h, "GET", "/live/500k/index.m3u8").Body.Bytes())
	c.Set(testEpoch.Add(10 * time.Second)) // the wall clock steps back 90 s
	after := parsePlaylist(t, get(h, "GET", "/live/500k/index.m3u8").Body.Bytes())
	if after.sequence != before.sequence || len(after.segments) != len(before.segments) {
		t.Fatalf("after the clock stepped back the playlist went from %d+%d to %d+%d",
			before.sequence, len(before.segments), after.sequence, len(after.segments))
	}
	if w := get(h, "GET", "/live/500k/49.ts"); w.Code != http.StatusOK {
		t.Fatalf("the newest segment vanished when the clock stepped back: %d", w.Code)
	}
	c.Set(testEpoch.Add(104 * time.Second))
	if p := parsePlaylist(t, get(h, "GET", "/live/500k/index.m3u8").Body.Bytes()); p.segments[len(p.segments)-1] != 51 {
		t.Fatalf("the stream did not move on once the clock caught up: %v", p.segments)
	}
}

func TestStreamNotStarted(t *testing.T) {
	s, fc := fakeServer(t, Config{Epoch: testEpoch.Add(time.Minute)}) // starts in a minute
	h := s.Handler()
	for _, path := range []string{"/live/500k/index.m3u8", "/live/500k/0.ts"} {
		w := get(h, "GET", path)
		if w.Code != http.StatusNotFound || w.Header().Get("Cache-Control") != NotFoundCacheControl {
			t.Fatalf("%s before the start: %d %q", path, w.Code, w.Header().Get("Cache-Control"))
		}
	}
	if w := get(h, "GET", "/live/master.m3u8"); w.Code != http.StatusOK {
		t.Fatalf("master before the start: %d", w.Code)
	}
	fc.Set(testEpoch.Add(time.Minute + 2*time.Second))
	if w := get(h, "GET", "/live/500k/0.ts"); w.Code != http.StatusOK {
		t.Fatalf("segment 0 once published: %d %s", w.Code, w.Body)
	}
}

func TestDefaultEpochIsNowTruncated(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 987654321, time.UTC)
	s := newTestServer(t, Config{Clock: &steppingClock{now: now}, SegmentDuration: 4 * time.Second})
	if want := now.Truncate(4 * time.Second); !s.Epoch().Equal(want) {
		t.Fatalf("epoch %v, want %v", s.Epoch(), want)
	}
}
