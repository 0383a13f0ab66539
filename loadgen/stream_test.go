package loadgen

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStream is a controllable live HLS server on a virtual clock: segment k covers
// [epoch+k·td, epoch+(k+1)·td) and is listed once complete, in a sliding window. Hooks
// delay, fail or throttle chosen requests, in virtual time.
type testStream struct {
	clock  *vclock
	epoch  time.Time
	td     time.Duration
	window int
	levels []int64 // BANDWIDTH of each rendition

	delay  func(r reqInfo) time.Duration // virtual wait before answering
	status func(r reqInfo) int           // non-zero: answer this status instead
	rate   func(r reqInfo) float64       // bits/s to deliver a segment at (0: instantly)

	mu  sync.Mutex // protects log
	log []reqInfo
}

// reqInfo is one request as the server saw it.
type reqInfo struct {
	At     time.Time // virtual
	Server string
	Kind   Kind
	Master bool
	Level  int
	Seq    int64
	Remote string
}

func newTestStream(c *vclock, epoch time.Time, td time.Duration, levels ...int64) *testStream {
	if len(levels) == 0 {
		levels = []int64{500_000}
	}
	return &testStream{clock: c, epoch: epoch, td: td, window: 6, levels: levels}
}

// serve starts a server for the stream named name.
func (s *testStream) serve(t testing.TB, name string) *httptest.Server {
	srv := httptest.NewServer(s.handler(name))
	t.Cleanup(srv.Close)
	return srv
}

func (s *testStream) requests() []reqInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]reqInfo(nil), s.log...)
}

// where returns the requests matching f.
func (s *testStream) where(f func(reqInfo) bool) []reqInfo {
	var out []reqInfo
	for _, r := range s.requests() {
		if f(r) {
			out = append(out, r)
		}
	}
	return out
}

func (s *testStream) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := reqInfo{At: s.clock.Now(), Server: name, Remote: r.RemoteAddr, Level: -1, Seq: -1}
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		switch {
		case r.URL.Path == "/live/master.m3u8":
			ri.Kind, ri.Master = KindPlaylist, true
		case r.URL.Path == "/api/viewers":
			ri.Kind = KindHeartbeat
		case len(parts) == 3 && parts[0] == "live":
			l, err := strconv.Atoi(parts[1])
			if err != nil || l < 0 || l >= len(s.levels) {
				http.NotFound(w, r)
				return
			}
			ri.Level = l
			if parts[2] == "index.m3u8" {
				ri.Kind = KindPlaylist
			} else if seq, err := strconv.ParseInt(strings.TrimSuffix(parts[2], ".ts"), 10, 64); err == nil {
				ri.Kind, ri.Seq = KindSegment, seq
			} else {
				http.NotFound(w, r)
				return
			}
		default:
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		s.log = append(s.log, ri)
		s.mu.Unlock()
		if s.delay != nil {
			s.clock.sleep(r.RemoteAddr, r.Context(), s.delay(ri))
		}
		if s.status != nil {
			if code := s.status(ri); code != 0 {
				http.Error(w, http.StatusText(code), code)
				return
			}
		}
		switch {
		case ri.Kind == KindHeartbeat:
			fmt.Fprint(w, `{"viewers": 1}`)
		case ri.Master:
			fmt.Fprint(w, s.master())
		case ri.Kind == KindPlaylist:
			fmt.Fprint(w, s.media(s.clock.Now()))
		default:
			size := s.levels[ri.Level] * int64(s.td/time.Millisecond) / 8000
			if s.rate != nil {
				if bps := s.rate(ri); bps > 0 {
					s.clock.sleep(r.RemoteAddr, r.Context(), time.Duration(float64(size*8)/bps*float64(time.Second)))
				}
			}
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Write(make([]byte, size))
		}
	})
}

func (s *testStream) master() string {
	var b strings.Builder
	b.WriteString("#EXTM3U\n")
	for i, bw := range s.levels {
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,CODECS=\"avc1.4d401f,mp4a.40.2\"\n%d/index.m3u8\n", bw, i)
	}
	return b.String()
}

// lastComplete is the newest segment finished at now (-1: none yet).
func (s *testStream) lastComplete(now time.Time) int64 {
	return int64(now.Sub(s.epoch)/s.td) - 1
}

func (s *testStream) media(now time.Time) string {
	last := s.lastComplete(now)
	first := last - int64(s.window) + 1
	if first < 0 {
		first = 0
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", int(s.td/time.Second), first)
	for k := first; k <= last; k++ {
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n#EXTINF:%.3f,\n%d.ts\n",
			s.epoch.Add(time.Duration(k)*s.td).UTC().Format("2006-01-02T15:04:05.000Z"), s.td.Seconds(), k)
	}
	return b.String()
}

// testViewer builds one viewer on the virtual clock, joined now.
func testViewer(t testing.TB, c *vclock, cfg PlayerConfig, targets Targets) (*Viewer, *Recorder) {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	env := &viewerEnv{cfg: cfg, sched: c}
	if err := env.setTargets(targets); err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(env.mirrors))
	for i, ep := range env.mirrors {
		names[i] = ep.name
	}
	rec := NewRecorder(nil, names)
	env.rec = rec
	v := newViewer(env, 0, nil)
	v.client.(*httpClient).dial = c.dial
	v.start()
	t.Cleanup(func() {
		v.stop(reasonStopped)
		v.abort()
	})
	return v, rec
}
