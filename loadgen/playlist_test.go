package loadgen

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const mediaSample = "#EXTM3U\r\n" +
	"#EXT-X-VERSION:3\r\n" +
	"#EXT-X-TARGETDURATION:2\r\n" +
	"#EXT-X-MEDIA-SEQUENCE:41\r\n" +
	"# a comment\r\n" +
	"#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:01:22.000Z\r\n" +
	"#EXTINF:2.000,\r\n" +
	"41.ts\r\n" +
	"\r\n" +
	"#EXTINF:1.5,title, with comma\r\n" +
	"42.ts?token=a%20b\r\n" +
	"#EXT-X-PROGRAM-DATE-TIME:2025-01-01T01:01:25.5+01:00\r\n" +
	"#EXTINF:2,\r\n" +
	"/abs/43.ts\r\n"

func TestParseMediaPlaylist(t *testing.T) {
	var p playlist
	if err := parsePlaylist([]byte(mediaSample), &p); err != nil {
		t.Fatal(err)
	}
	if p.multivariant || p.targetDuration != 2*time.Second || p.mediaSequence != 41 || p.endList {
		t.Fatalf("header fields %+v", p)
	}
	want := []struct {
		uri string
		dur time.Duration
		pdt time.Time
	}{
		{"41.ts", 2 * time.Second, time.Date(2025, 1, 1, 0, 1, 22, 0, time.UTC)},
		// No date of its own: the previous one's plus its duration (RFC 8216 §4.3.2.6).
		{"42.ts?token=a%20b", 1500 * time.Millisecond, time.Date(2025, 1, 1, 0, 1, 24, 0, time.UTC)},
		// +01:00 offset.
		{"/abs/43.ts", 2 * time.Second, time.Date(2025, 1, 1, 0, 1, 25, 5e8, time.UTC)},
	}
	if len(p.segments) != len(want) {
		t.Fatalf("%d segments, want %d", len(p.segments), len(want))
	}
	for i, w := range want {
		s := p.segments[i]
		if string(s.uri) != w.uri || s.duration != w.dur || !s.pdt.Equal(w.pdt) {
			t.Errorf("segment %d = {%s %v %v}, want %+v", i, s.uri, s.duration, s.pdt, w)
		}
	}
}

func TestParseMultivariantPlaylist(t *testing.T) {
	body := "#EXTM3U\n" +
		"#EXT-X-STREAM-INF:AVERAGE-BANDWIDTH=1,BANDWIDTH=1650000,CODECS=\"avc1.4d401f,mp4a.40.2\",RESOLUTION=1280x720\n" +
		"1500k/index.m3u8\n" +
		"#EXT-X-STREAM-INF:CODECS=\"a,b\",BANDWIDTH=550000\n" +
		"500k/index.m3u8\n"
	var p playlist
	if err := parsePlaylist([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if !p.multivariant || len(p.variants) != 2 {
		t.Fatalf("%+v", p)
	}
	if p.variants[0].bandwidth != 1650000 || string(p.variants[0].uri) != "1500k/index.m3u8" ||
		p.variants[1].bandwidth != 550000 || string(p.variants[1].uri) != "500k/index.m3u8" {
		t.Fatalf("variants %+v", p.variants)
	}
}

func TestParsePlaylistRejects(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string // part of the error
	}{
		{"", "#EXTM3U"},                                                    // empty body
		{"<html>not found</html>", "#EXTM3U"},                              // an error page
		{"#EXTM3U\n", "no EXT-X-STREAM-INF"},                               // header only
		{"#EXTM3U\n#EXTINF:2,\na.ts\n", "TARGETDURATION"},                  // RFC 8216 §4.3.3.1 requires it
		{"#EXTM3U\n#EXT-X-TARGETDURATION:0\n", "TARGETDURATION"},           // would reload in a busy loop
		{"#EXTM3U\n#EXT-X-TARGETDURATION:abc\n", "TARGETDURATION"},         // not a number
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:x,\na.ts\n", "EXTINF"}, // bad duration
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n", "not followed by a URI"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "without EXTINF"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:-1\n", "MEDIA-SEQUENCE"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n#EXTINF:2,\na.ts\n", "PROGRAM-DATE-TIME"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n#EXT-X-BYTERANGE:100@0\na.ts\n", "BYTERANGE"},
		{"#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\na.m3u8\n", "BANDWIDTH"},
		{"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-VERSION:3\na.m3u8\n", "not followed by a URI"},
		{"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nb.ts\n", "neither"},
		{"#EXTM3U\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n", "EXT-X-MAP without URI"},
	} {
		var p playlist
		err := parsePlaylist([]byte(tc.body), &p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse %q: error %v, want one mentioning %q", tc.body, err, tc.want)
		}
	}
}

func TestParseDateTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time // zero: rejected
	}{
		{"2025-01-01T00:00:00Z", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},         // seconds only
		{"2025-01-01T00:00:00.123Z", time.Date(2025, 1, 1, 0, 0, 0, 123e6, time.UTC)}, // milliseconds
		{"2025-01-01T00:00:00.123456789Z", time.Date(2025, 1, 1, 0, 0, 0, 123456789, time.UTC)},
		{"2025-01-01T02:00:00+02:00", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}, // offset with colon
		{"2024-12-31T22:30:00-0130", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},  // offset without
		{"2025-01-01 00:00:00Z", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},      // space separator
		{"2025-01-01T00:00:00", time.Time{}},                                       // no zone
		{"2025-13-01T00:00:00Z", time.Time{}},                                      // month 13
		{"2025-01-01T00:00:00.Z", time.Time{}},                                     // empty fraction
		{"2025-01-01T00:00:00+2:00", time.Time{}},                                  // short offset
		{"not a date at all!!!", time.Time{}},
	} {
		got, ok := parseDateTime([]byte(tc.in))
		if ok != !tc.want.IsZero() || (ok && !got.Equal(tc.want)) {
			t.Errorf("parseDateTime(%q) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
	}
}

func TestParseDecimalSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{"2.000", 2 * time.Second, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"0.000000001", time.Nanosecond, true},
		{" 6.006 ", 6006 * time.Millisecond, true},
		{"", 0, false},
		{".5", 0, false},       // RFC 8216 decimal-floating-point starts with a digit
		{"5.", 0, false},       // and has digits after the point
		{"-1", 0, false},       // no sign
		{"1e3", 0, false},      // no exponent
		{"99999999", 0, false}, // over a day
	} {
		got, ok := parseDecimalSeconds([]byte(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseDecimalSeconds(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestResolveRef(t *testing.T) {
	for _, tc := range []struct {
		base, ref string
		want      string
		host      string // non-empty when the URI names another server
	}{
		{"/live/0/index.m3u8", "12.ts", "/live/0/12.ts", ""},                  // the common case
		{"/live/0/index.m3u8?x=1", "12.ts", "/live/0/12.ts", ""},              // base query dropped
		{"/live/master.m3u8", "500k/index.m3u8", "/live/500k/index.m3u8", ""}, // variant
		{"/live/0/index.m3u8", "/other/12.ts", "/other/12.ts", ""},            // absolute path
		{"/live/0/index.m3u8", "../1/12.ts", "/live/1/12.ts", ""},             // dot segments
		{"/live/0/index.m3u8", "12.ts?sig=a", "/live/0/12.ts?sig=a", ""},      // query kept
		{"/live/0/index.m3u8", "http://cdn.example:81/x/12.ts", "/x/12.ts", "cdn.example:81"},
	} {
		got, ep, err := resolveRef(tc.base, []byte(tc.ref))
		if err != nil {
			t.Errorf("resolve %q against %q: %v", tc.ref, tc.base, err)
			continue
		}
		host := ""
		if ep != nil {
			host = ep.addr
		}
		if got != tc.want || host != tc.host {
			t.Errorf("resolve %q against %q = %q on %q, want %q on %q", tc.ref, tc.base, got, host, tc.want, tc.host)
		}
	}
	if _, _, err := resolveRef("/live/0/index.m3u8", []byte("a\x00.ts")); !errors.Is(err, errPlaylist) {
		t.Errorf("control character accepted: %v", err)
	}
}

func TestLiveStart(t *testing.T) {
	mk := func(durs ...time.Duration) *playlist {
		p := &playlist{targetDuration: 2 * time.Second}
		for _, d := range durs {
			p.segments = append(p.segments, segmentRef{duration: d})
		}
		return p
	}
	s2 := 2 * time.Second
	for _, tc := range []struct {
		name   string
		p      *playlist
		idx    int
		offset time.Duration
	}{
		{"six 2 s segments: the third from the end", mk(s2, s2, s2, s2, s2, s2), 3, 0},
		{"uneven: 3 TD before the end falls inside a segment", mk(s2, s2, 3*time.Second, s2, s2), 2, time.Second},
		{"shorter than 3 TD: the first segment", mk(s2, s2), 0, 0},
		{"ended (VOD): the first segment", func() *playlist { p := mk(s2, s2, s2, s2); p.endList = true; return p }(), 0, 0},
	} {
		idx, off := liveStart(tc.p, 3)
		if idx != tc.idx || off != tc.offset {
			t.Errorf("%s: start at %d+%v, want %d+%v", tc.name, idx, off, tc.idx, tc.offset)
		}
	}
}

// FuzzParsePlaylist: any input parses or fails with an error, never panics, and what
// parses satisfies the invariants the player relies on.
func FuzzParsePlaylist(f *testing.F) {
	f.Add([]byte(mediaSample))
	f.Add([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=550000,CODECS=\"a,b\"\n500k/index.m3u8\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\na.m4s\n#EXT-X-ENDLIST\n"))
	f.Add([]byte("\xef\xbb\xbf#EXTM3U\n#EXT-X-TARGETDURATION:2\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000+01:00\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.006,\nx.ts\n"))
	var p playlist
	f.Fuzz(func(t *testing.T, body []byte) {
		err := parsePlaylist(body, &p)
		if err != nil {
			return
		}
		if p.multivariant {
			for _, v := range p.variants {
				if v.bandwidth <= 0 || len(v.uri) == 0 {
					t.Fatalf("variant %+v", v)
				}
			}
			return
		}
		if p.targetDuration <= 0 || p.targetDuration > maxTargetDuration {
			t.Fatalf("target duration %v", p.targetDuration)
		}
		if p.mediaSequence < 0 {
			t.Fatalf("media sequence %d", p.mediaSequence)
		}
		for _, s := range p.segments {
			if s.duration < 0 || len(s.uri) == 0 || s.uri[0] == '#' {
				t.Fatalf("segment %+v", s)
			}
		}
		idx, off := liveStart(&p, 3)
		if len(p.segments) > 0 && (idx < 0 || idx >= len(p.segments) || off < 0 || off > p.segments[idx].duration) {
			t.Fatalf("live start %d+%v of %d segments", idx, off, len(p.segments))
		}
		for _, s := range p.segments { // every URI either resolves or is refused cleanly
			if _, _, err := resolveRef("/live/0/index.m3u8", s.uri); err != nil && !errors.Is(err, errPlaylist) {
				t.Fatalf("resolve %q: %v", s.uri, err)
			}
		}
	})
}

func FuzzParseDateTime(f *testing.F) {
	f.Add("2025-01-01T00:00:00.000Z")
	f.Add("2025-01-01T02:00:00+02:00")
	f.Add("2024-12-31T22:30:00-0130")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseDateTime([]byte(s))
		if !ok {
			return
		}
		// Whatever parses must agree with the standard library where RFC 3339 applies.
		if ref, err := time.Parse(time.RFC3339Nano, s); err == nil && !ref.Equal(got) {
			t.Fatalf("%q: %v, time.Parse says %v", s, got, ref)
		}
	})
}
