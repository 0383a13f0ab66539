package loadgen

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// WatchConfig is one viewer's session, run by Watch.
type WatchConfig struct {
	Targets Targets
	Player  PlayerConfig
	// Duration is how long the viewer watches; 0 watches until ctx ends (or the session
	// ends by itself: a fatal error, or a finished stream played out).
	Duration time.Duration
	// Dial, when set, opens every connection the viewer makes, with the request's
	// time-to-first-byte budget as ctx's deadline; it returns a plain TCP connection
	// (the viewer adds TLS for https targets). It replaces dialing from Source. A load
	// tool passes its own dialer here so that its address rules, DNS and byte counters
	// apply (k6: the VU's dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Source is the local address to dial from when Dial is nil; nil lets the kernel
	// choose.
	Source net.Addr
	// Observe, when set, receives each measurement as it is made. It is called from the
	// viewer's timer callbacks, possibly from several goroutines at once, sometimes while
	// the viewer holds its own lock: it must be safe for concurrent use, must not call
	// back into Watch, and should not block for long (a blocked call holds up that
	// viewer's playback model, never other viewers).
	Observe func(Measurement)
	// StopGrace is how long requests in flight at the end of Duration may finish (and be
	// measured) before their connections are closed (DefaultStopGrace). When ctx ends,
	// they are cut short at once.
	StopGrace time.Duration
	// ID tells viewers apart; it seeds the random mirror choice (ChooseRandom).
	ID int
}

// MeasurementKind is what a Measurement is of.
type MeasurementKind uint8

// Measurement kinds, with the Measurement fields each one sets.
const (
	// MeasureRequest: a request finished (Kind, Mirror, Status, Class, Err, TTFB,
	// Duration, Bytes, Aborted).
	MeasureRequest MeasurementKind = iota
	// MeasureStartup: the first segment landed and playback began (Duration: since join).
	MeasureStartup
	// MeasureStallBegan: the buffer ran dry.
	MeasureStallBegan
	// MeasureStallEnded: a stall ended (Duration; Complete is false when the session
	// ended during the stall rather than a segment landing).
	MeasureStallEnded
	// MeasureLiveLatency: at a segment landing, wall clock minus the playhead's program
	// date-time (Duration).
	MeasureLiveLatency
	// MeasureCounter: the viewer counter answered (Viewers).
	MeasureCounter
	// MeasureMirrorSwitch: the viewer moved to the next mirror after repeated errors.
	MeasureMirrorSwitch
	// MeasureRenditionSwitch: ABR switched rendition (Up).
	MeasureRenditionSwitch
	// MeasureResync: the viewer fell behind the playlist window and jumped to live.
	MeasureResync
	// MeasureSessionEnd: the session ended (Reason, Played, Stalls, StallTime); it is
	// the last measurement of a session.
	MeasureSessionEnd
	numMeasurementKinds
)

var measurementNames = [numMeasurementKinds]string{"request", "startup", "stall_began", "stall_ended",
	"live_latency", "counter", "mirror_switch", "rendition_switch", "resync", "session_end"}

// String names the kind.
func (k MeasurementKind) String() string {
	if k >= numMeasurementKinds {
		return "unknown"
	}
	return measurementNames[k]
}

// Session end reasons (Measurement.Reason, WatchResult.Reason).
const (
	// SessionStopped: Duration passed or the context ended.
	SessionStopped = reasonStopped
	// SessionFatal: a load failed past its retries (hls.js's fatal error).
	SessionFatal = reasonFatal
	// SessionEnd: the stream ended (EXT-X-ENDLIST) and was played out.
	SessionEnd = reasonEnd
)

// Measurement is one thing a watching viewer measured. What says which fields are set.
type Measurement struct {
	What MeasurementKind
	At   time.Time

	// Requests.
	Kind Kind
	// Mirror is the host:port of the mirror the request was for ("" for heartbeats,
	// which go to the counter). Bounded by the configured mirrors: fit for a label.
	Mirror string
	Status int    // HTTP status; 0 when no answer came
	Class  string // error class (report.Class*); "" for a usable answer
	Err    error  // the transport error, if any
	TTFB   time.Duration
	Bytes  int64 // body bytes received
	// Aborted: the request was cut short by the session's end; it is not an error.
	Aborted bool

	// Duration of a request (start to last byte), of the start-up, of a stall, or the
	// live latency.
	Duration time.Duration
	Complete bool  // MeasureStallEnded
	Up       bool  // MeasureRenditionSwitch
	Viewers  int64 // MeasureCounter

	// Session end.
	Reason    string
	Played    time.Duration
	Stalls    int64
	StallTime time.Duration
}

// WatchResult is what one viewer's session came to.
type WatchResult struct {
	Reason  string        // SessionStopped, SessionFatal or SessionEnd
	Mirror  string        // host:port of the mirror in use at the end
	Startup time.Duration // join to first frame; 0 when playback never began
	Played  time.Duration // media time played
	// Stalls, StallTime: how often and how long playback waited for data, a stall still
	// running at the end included.
	Stalls    int64
	StallTime time.Duration
	// RebufferRatio is StallTime / (Played + StallTime); 0 when nothing was watched.
	RebufferRatio float64
	// Requests, Errors, Bytes: finished requests (aborted ones that reached the server
	// included), failed ones, body bytes received.
	Requests, Errors, Bytes int64
	// MaxLag is the latest any of the viewer's timers fired: large values mean the
	// process running it is overloaded and its measurements are suspect.
	MaxLag time.Duration
}

// Watch plays one viewer — the same Viewer a Swarm runs, with the same player model —
// for cfg.Duration or until ctx ends, reporting each measurement to cfg.Observe as it is
// made, and returns the session's totals. It blocks until the viewer has stopped and
// its last callback has returned, so no Observe call comes after it returns. The viewer
// has no goroutine while it waits: its activities are timer callbacks, as in a swarm.
// An unusable configuration is an error (naming the field); a session that fails
// (unreachable mirrors, a fatal load error) is not: it is in the result.
func Watch(ctx context.Context, cfg WatchConfig) (*WatchResult, error) {
	return watch(ctx, cfg, realScheduler{})
}

func watch(ctx context.Context, cfg WatchConfig, sched scheduler) (*WatchResult, error) {
	player, err := cfg.Player.withDefaults()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Duration < 0:
		return nil, fmt.Errorf("Duration: %v is negative", cfg.Duration)
	case cfg.StopGrace < 0:
		return nil, fmt.Errorf("StopGrace: %v is negative", cfg.StopGrace)
	case cfg.StopGrace == 0:
		cfg.StopGrace = DefaultStopGrace
	}
	env := &viewerEnv{cfg: player, sched: sched}
	if err := env.setTargets(cfg.Targets); err != nil {
		return nil, err
	}
	ws := &watchSink{sched: sched, observe: cfg.Observe, mirrors: make([]string, len(env.mirrors))}
	for i, ep := range env.mirrors {
		ws.mirrors[i] = ep.name
	}
	env.rec = ws
	if ctx.Err() != nil {
		return &WatchResult{Reason: SessionStopped, Mirror: ws.mirrors[0]}, nil
	}
	v := newViewer(env, cfg.ID, cfg.Source)
	if cfg.Dial != nil {
		useDialer(v.client, cfg.Dial)
	}

	due := make(chan struct{})
	if cfg.Duration > 0 {
		t := sched.AfterFunc(cfg.Duration, func() { close(due) })
		defer t.Stop()
	}
	v.start()
	select {
	case <-v.Done(): // ended by itself: fatal error, or the stream played out
	case <-due:
		v.stop(reasonStopped)
		grace := time.NewTimer(cfg.StopGrace)
		select {
		case <-v.Done():
		case <-grace.C:
			v.abort()
		}
		grace.Stop()
	case <-ctx.Done():
		v.stop(reasonStopped)
		v.abort()
	}
	<-v.Done()
	return ws.result(v.State().Mirror), nil
}

// useDialer makes client open its connections with dial.
func useDialer(client fetcher, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	switch c := client.(type) {
	case *httpClient:
		c.dial = func(network, addr string, timeout time.Duration) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return dial(ctx, network, addr)
		}
	case *netHTTPClient:
		c.transport.DialContext = dial
	default:
		panic(fmt.Sprintf("loadgen: no dialer hook for %T", client)) // a new fetcher must add one here
	}
}

// watchSink turns a lone viewer's reports into Measurements and keeps its totals.
type watchSink struct {
	sched   scheduler
	observe func(Measurement) // nil: totals only
	mirrors []string          // names by mirror index

	mu  sync.Mutex // protects res
	res WatchResult
}

var _ sink = (*watchSink)(nil)

func (w *watchSink) emit(m Measurement) {
	if w.observe != nil {
		m.At = w.sched.Now()
		w.observe(m)
	}
}

func (w *watchSink) sessionStarted() {}

func (w *watchSink) sessionEnded(s sessionStats) {
	w.mu.Lock()
	w.res.Reason = s.reason
	w.res.Played = s.played
	w.res.Stalls = s.stalls
	w.res.StallTime = time.Duration(s.stallSeconds * float64(time.Second))
	w.mu.Unlock()
	w.emit(Measurement{What: MeasureSessionEnd, Reason: s.reason, Played: s.played,
		Stalls: s.stalls, StallTime: time.Duration(s.stallSeconds * float64(time.Second))})
}

// request follows Recorder.request: a request cut short by the session's end counts
// when it reached the server, and is never an error.
func (w *watchSink) request(req *request, mirror int, res *response, aborted bool) {
	m := Measurement{What: MeasureRequest, Kind: req.kind, Status: res.code, Err: res.err,
		TTFB: res.ttfb, Duration: res.total, Bytes: res.bytes}
	if req.kind != KindHeartbeat && mirror >= 0 && mirror < len(w.mirrors) {
		m.Mirror = w.mirrors[mirror]
	}
	if aborted && res.err != nil {
		if !res.sent {
			return
		}
		m.Aborted = true
	} else if res.err != nil {
		m.Class = errorClasses[classifyError(res.err)]
	} else if c, bad := classifyStatus(res.code); bad {
		m.Class = errorClasses[c]
	}
	w.mu.Lock()
	w.res.Requests++
	w.res.Bytes += res.bytes
	if m.Class != "" {
		w.res.Errors++
	}
	w.mu.Unlock()
	w.emit(m)
}

func (w *watchSink) stallBegan() { w.emit(Measurement{What: MeasureStallBegan}) }

func (w *watchSink) stallEnded(d time.Duration, complete bool) {
	w.emit(Measurement{What: MeasureStallEnded, Duration: d, Complete: complete})
}

func (w *watchSink) startupTook(d time.Duration) {
	w.mu.Lock()
	w.res.Startup = d
	w.mu.Unlock()
	w.emit(Measurement{What: MeasureStartup, Duration: d})
}

func (w *watchSink) liveLatency(d time.Duration) {
	w.emit(Measurement{What: MeasureLiveLatency, Duration: d})
}

func (w *watchSink) lag(d time.Duration) {
	w.mu.Lock()
	if d > w.res.MaxLag {
		w.res.MaxLag = d
	}
	w.mu.Unlock()
}

// playedFor: the session's end reports the whole played time.
func (w *watchSink) playedFor(time.Duration) {}

func (w *watchSink) counterAnswered(n int64) {
	w.emit(Measurement{What: MeasureCounter, Viewers: n})
}

func (w *watchSink) mirrorSwitched() { w.emit(Measurement{What: MeasureMirrorSwitch}) }

func (w *watchSink) levelSwitched(up bool) {
	w.emit(Measurement{What: MeasureRenditionSwitch, Up: up})
}

func (w *watchSink) resynced() { w.emit(Measurement{What: MeasureResync}) }

// result is the session's totals; mirror is the one in use at the end.
func (w *watchSink) result(mirror string) *WatchResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.res
	r.Mirror = mirror
	if watched := r.Played + r.StallTime; watched > 0 {
		r.RebufferRatio = r.StallTime.Seconds() / watched.Seconds()
	}
	return &r
}
