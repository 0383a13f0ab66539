package loadgen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"time"
)

// viewerEnv is what every viewer of a swarm shares, read-only after setup.
type viewerEnv struct {
	cfg         PlayerConfig // defaults applied
	sched       scheduler
	rec         sink        // the swarm's Recorder, or Watch's observer
	mirrors     []*endpoint // where the stream can be played from, in configured order
	masterPath  string      // the multivariant playlist's path below each mirror's base
	counter     *endpoint   // nil: no heartbeats
	counterPath string
	// ended is called once when a viewer has stopped and its last callback returned.
	ended func(*Viewer)
}

// laneState is where one of a viewer's activities (playlist loading, segment loading)
// stands. Each lane runs at most one callback at a time.
type laneState uint8

const (
	laneIdle      laneState = iota // waiting for another lane to wake it
	laneScheduled                  // its timer is armed
	laneRunning                    // a callback is working
)

// level is one rendition from the multivariant playlist.
type level struct {
	bandwidth int64
	path      string    // below the mirror's base
	ep        *endpoint // non-nil when the playlist named another host
}

// pendingSeg is a segment listed in the playlist and not yet fetched.
type pendingSeg struct {
	seq      int64
	duration time.Duration
	pdt      time.Time
	path     string
	ep       *endpoint
}

// datePoint maps a media position to its program date-time.
type datePoint struct {
	pos time.Duration
	pdt time.Time
}

// loadRetry is the retry state of the load a lane is attempting.
type loadRetry struct {
	timeouts, errors int // retries spent, per hls.js policy
	failsHere        int // failed attempts on the current mirror
	switches         int // mirror switches during this load
}

// Viewer is one simulated player. It has no goroutine of its own: its activities (the
// playlist loop, the segment loop, the heartbeat, the playback clock) are callbacks on
// the swarm's scheduler, so a waiting viewer costs a few hundred bytes of state and its
// idle keep-alive connections.
type Viewer struct {
	env    *viewerEnv
	id     int
	source net.Addr // the address it dials from; nil lets the kernel choose
	client fetcher
	done   chan struct{} // closed when stopped and idle

	mu sync.Mutex // protects every field below; no I/O happens while it is held

	// lifecycle
	joinAt   time.Time
	stopped  bool
	running  int // callbacks in progress
	finished bool
	reason   string

	// mirrors
	order  []int // mirror indices, nearest first once pinged
	cur    int   // position in order of the mirror in use
	pinged bool

	// renditions and the current media playlist
	levels []level // ascending bandwidth; nil until the multivariant playlist loaded
	// levelsFromMaster: the URL named a multivariant playlist (else a media playlist,
	// played as the only rendition).
	levelsFromMaster bool
	level            int
	loaded           bool // the current level's playlist loaded since the last switch
	td               time.Duration
	lastHash         uint64
	endList          bool
	lastSeq          int64 // highest sequence number taken into pending
	pending          []pendingSeg
	mapPath          string
	mapEP            *endpoint
	mapDone          bool

	// playlist lane
	plTimer timer
	plDue   time.Time
	plState laneState
	plNow   bool // reload as soon as the current load ends (rendition switch)
	plRetry loadRetry

	// segment lane
	segTimer  timer
	segDue    time.Time
	segState  laneState
	segRetry  loadRetry
	started   bool          // nextSeq is chosen
	nextSeq   int64         // the next segment to fetch
	nextStart time.Duration // its media position
	startOff  time.Duration // where in the first segment playback begins (live sync)

	// playback: positions are media time since the first fetched segment's start
	playing     bool
	firstFrame  time.Time
	bufferedEnd time.Duration
	anchorPos   time.Duration // playhead position at anchorAt, while playing and not stalled
	anchorAt    time.Time
	stalled     bool
	stallStart  time.Time
	stalls      int64
	stallTime   time.Duration
	playedRep   time.Duration // played time already reported to the recorder
	dryTimer    timer
	dryDue      time.Time
	dates       [8]datePoint // ring of recent segments' program date-times
	nDates      int
	startupTook time.Duration

	bw bandwidthEstimator

	// heartbeat lane
	hbTimer timer
	hbDue   time.Time

	// Each lane's request and response, reused: owned by the lane's one running callback.
	plReq  request
	plRes  response
	segReq request
	segRes response
}

func newViewer(env *viewerEnv, id int, source net.Addr) *Viewer {
	v := &Viewer{
		env:    env,
		id:     id,
		source: source,
		done:   make(chan struct{}),
		bw:     newBandwidthEstimator(&env.cfg),
		order:  make([]int, len(env.mirrors)),
		level:  -1,
	}
	for i := range v.order {
		v.order[i] = i
	}
	if env.cfg.MirrorChoice == ChooseRandom {
		rng := rand.New(rand.NewPCG(uint64(id), 0x6d6972726f72))
		rng.Shuffle(len(v.order), func(i, j int) { v.order[i], v.order[j] = v.order[j], v.order[i] })
		v.pinged = true // no ping: the order is the choice
	}
	switch env.cfg.Client {
	case ClientNetHTTP:
		v.client = newNetHTTPClient(env.sched, source, env.cfg.TLS, env.cfg.UserAgent, env.cfg.IdleConnTimeout)
	default:
		v.client = &httpClient{sched: env.sched, local: source, tls: env.cfg.TLS,
			userAgent: env.cfg.UserAgent, idleAfter: env.cfg.IdleConnTimeout}
	}
	return v
}

// ViewerState is a snapshot of one viewer, for tests, debugging and progress displays.
type ViewerState struct {
	ID        int
	Source    string // local address it dials from ("" when the kernel chooses)
	Mirror    string // host:port in use
	Rendition int    // index into the ascending-bandwidth renditions; -1 before the first
	Estimate  float64
	Playing   bool
	Stalled   bool
	Buffer    time.Duration
	Stalls    int64
	StallTime time.Duration
	Startup   time.Duration
	Stopped   bool
	Reason    string
}

// State returns a snapshot of the viewer.
func (v *Viewer) State() ViewerState {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.env.sched.Now()
	s := ViewerState{
		ID: v.id, Mirror: v.env.mirrors[v.order[v.cur]].name, Rendition: v.level,
		Estimate: v.bw.estimate(), Playing: v.playing, Stalled: v.stalled,
		Stalls: v.stalls, StallTime: v.stallTime, Startup: v.startupTook,
		Stopped: v.stopped, Reason: v.reason,
	}
	if v.source != nil {
		s.Source = v.source.String()
	}
	if v.playing {
		s.Buffer = v.bufferedEnd - v.playhead(now)
	}
	return s
}

// Done is closed once the viewer has stopped and its last request has returned.
func (v *Viewer) Done() <-chan struct{} { return v.done }

// start joins the stream now: the playlist lane begins with the mirror ping and the
// multivariant playlist, the heartbeat lane with its first call.
func (v *Viewer) start() {
	v.env.rec.sessionStarted()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.joinAt = v.env.sched.Now()
	v.armPlaylist(0)
	if v.env.counter != nil {
		v.armHeartbeat(0)
	}
}

// stop ends the session: no new request starts; requests in flight finish (and are
// recorded) unless abort is called.
func (v *Viewer) stop(reason string) {
	v.mu.Lock()
	v.stopLocked(reason)
	fin := v.stopped && v.running == 0 && !v.finished
	if fin {
		v.finished = true
	}
	v.mu.Unlock()
	if fin {
		v.finish()
	}
}

// abort closes the viewer's connections, cutting requests in flight short.
func (v *Viewer) abort() { v.client.closeAll() }

// stopLocked ends the session now. The viewer finishes when its last callback returns
// (exit), or in stop when none is running. Must hold v.mu.
func (v *Viewer) stopLocked(reason string) {
	if v.stopped {
		return
	}
	now := v.env.sched.Now()
	v.advance(now) // a stall that began unnoticed is counted; the stream may have ended
	if v.stopped {
		return
	}
	v.endSession(reason, now)
}

// endSession records the session's end at time at and stops the timers. Must hold v.mu.
func (v *Viewer) endSession(reason string, at time.Time) {
	v.stopped = true
	v.reason = reason
	for _, t := range []timer{v.plTimer, v.segTimer, v.dryTimer, v.hbTimer} {
		if t != nil {
			t.Stop()
		}
	}
	stats := sessionStats{reason: reason, stalls: v.stalls, fatal: reason == reasonFatal}
	if v.stalled {
		d := at.Sub(v.stallStart)
		v.stallTime += d
		v.stalled = false
		v.env.rec.stallEnded(d, false)
	}
	stats.stallSeconds = v.stallTime.Seconds()
	if v.playing {
		played := at.Sub(v.firstFrame) - v.stallTime
		stats.played = played
		v.env.rec.playedFor(played - v.playedRep)
		v.playedRep = played
	}
	v.env.rec.sessionEnded(stats)
}

// finish runs once, after the viewer stopped and went idle.
func (v *Viewer) finish() {
	v.client.closeAll()
	close(v.done)
	if v.env.ended != nil {
		v.env.ended(v)
	}
}

// enter starts a callback; it reports false when the viewer has stopped.
func (v *Viewer) enter() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return false
	}
	v.running++
	return true
}

func (v *Viewer) exit() {
	v.mu.Lock()
	v.running--
	fin := v.stopped && v.running == 0 && !v.finished
	if fin {
		v.finished = true
	}
	v.mu.Unlock()
	if fin {
		v.finish()
	}
}

// Timers. Each lane owns one timer, created on first use and re-armed after, so
// scheduling allocates nothing. Must hold v.mu.

func (v *Viewer) armPlaylist(d time.Duration) {
	if d < 0 {
		d = 0 // overdue (a slow load): now, and lag measures only the scheduler
	}
	v.plState = laneScheduled
	v.plDue = v.env.sched.Now().Add(d)
	if v.plTimer == nil {
		v.plTimer = v.env.sched.AfterFunc(d, v.onPlaylist)
	} else {
		v.plTimer.Reset(d)
	}
}

func (v *Viewer) armSegment(d time.Duration) {
	if d < 0 {
		d = 0 // overdue (a slow load): now, and lag measures only the scheduler
	}
	v.segState = laneScheduled
	v.segDue = v.env.sched.Now().Add(d)
	if v.segTimer == nil {
		v.segTimer = v.env.sched.AfterFunc(d, v.onSegment)
	} else {
		v.segTimer.Reset(d)
	}
}

func (v *Viewer) armDry(d time.Duration) {
	if d < 0 {
		d = 0 // overdue (a slow load): now, and lag measures only the scheduler
	}
	v.dryDue = v.env.sched.Now().Add(d)
	if v.dryTimer == nil {
		v.dryTimer = v.env.sched.AfterFunc(d, v.onDry)
	} else {
		v.dryTimer.Reset(d)
	}
}

func (v *Viewer) armHeartbeat(d time.Duration) {
	if d < 0 {
		d = 0 // overdue (a slow load): now, and lag measures only the scheduler
	}
	v.hbDue = v.env.sched.Now().Add(d)
	if v.hbTimer == nil {
		v.hbTimer = v.env.sched.AfterFunc(d, v.onHeartbeat)
	} else {
		v.hbTimer.Reset(d)
	}
}

// kickSegment wakes an idle segment lane. Must hold v.mu.
func (v *Viewer) kickSegment() {
	if v.segState == laneIdle && !v.stopped {
		v.armSegment(0)
	}
}

// kickPlaylist makes the playlist lane load now (after a rendition switch). Must hold v.mu.
func (v *Viewer) kickPlaylist() {
	switch v.plState {
	case laneRunning:
		v.plNow = true
	case laneScheduled:
		if v.plTimer.Stop() {
			v.armPlaylist(0)
		} else {
			v.plNow = true // its callback is starting
		}
	default:
		v.armPlaylist(0)
	}
}

// mirror is the index of the mirror in use. Must hold v.mu.
func (v *Viewer) mirror() int { return v.order[v.cur] }

// fetch performs req and records it; the caller releases res.
func (v *Viewer) fetch(req *request, res *response, mirror int) {
	v.client.get(req, res)
	v.mu.Lock()
	aborted := v.stopped
	v.mu.Unlock()
	v.env.rec.request(req, mirror, res, aborted)
}

// failed reports whether a response is unusable.
func failed(res *response) bool {
	if res.err != nil {
		return true
	}
	_, bad := classifyStatus(res.code)
	return bad
}

// onFailure decides what a failed load does next: move to the next mirror after
// FailoverAfter failures on this one (each other mirror once per load), else retry per
// the hls.js policy (timeouts and errors have separate budgets, 4xx is not retried).
// It returns whether to retry and after how long. Must hold v.mu.
func (v *Viewer) onFailure(rs *loadRetry, p LoadPolicy, res *response) (bool, time.Duration) {
	rs.failsHere++
	fa := v.env.cfg.FailoverAfter
	if fa > 0 && rs.failsHere >= fa && len(v.order) > 1 && rs.switches < len(v.order)-1 {
		v.cur = (v.cur + 1) % len(v.order)
		rs.switches++
		rs.failsHere, rs.timeouts, rs.errors = 0, 0, 0
		v.env.rec.mirrorSwitched()
		return true, 0
	}
	if res.err != nil && classifyError(res.err) == clsTimeout {
		if rs.timeouts < p.TimeoutRetries {
			d := retryDelay(p.TimeoutRetryDelay, p.TimeoutMaxRetryDelay, rs.timeouts)
			rs.timeouts++
			return true, d
		}
		return false, 0
	}
	if res.err == nil && res.code >= 400 && res.code < 500 {
		return false, 0
	}
	if rs.errors < p.ErrorRetries {
		d := retryDelay(p.ErrorRetryDelay, p.ErrorMaxRetryDelay, rs.errors)
		rs.errors++
		return true, d
	}
	return false, 0
}

// retryLocked is what a lane does after a failed load (onFailure): a load that is not
// retried stops the viewer and idles the lane; a retry is either at once (true: the
// lane loads again now) or armed on the lane's timer after its delay. Must hold v.mu.
func (v *Viewer) retryLocked(rs *loadRetry, state *laneState, p LoadPolicy, res *response, arm func(time.Duration)) bool {
	retry, d := v.onFailure(rs, p, res)
	switch {
	case !retry:
		*state = laneIdle
		v.stopLocked(reasonFatal)
		return false
	case d == 0:
		return true
	}
	arm(d)
	return false
}

// pingMirrors measures each mirror's round trip with one GET of the multivariant
// playlist and orders them nearest first; unreachable mirrors go last.
func (v *Viewer) pingMirrors() {
	rtts := make([]time.Duration, len(v.env.mirrors))
	for i, ep := range v.env.mirrors {
		req := request{kind: KindPing, ep: ep, path: ep.prefix + v.env.masterPath,
			ttfbTimeout: v.env.cfg.PingTimeout, totalTimeout: v.env.cfg.PingTimeout}
		var res response
		v.fetch(&req, &res, i)
		rtts[i] = res.total
		if failed(&res) {
			rtts[i] = math.MaxInt64
		}
		res.release()
	}
	v.mu.Lock()
	sort.SliceStable(v.order, func(a, b int) bool { return rtts[v.order[a]] < rtts[v.order[b]] })
	v.cur = 0
	v.pinged = true
	chosen := v.env.mirrors[v.order[0]].addr
	v.mu.Unlock()
	for _, ep := range v.env.mirrors {
		if ep.addr != chosen {
			v.client.closeIdle(ep.addr)
		}
	}
}

// onPlaylist is the playlist lane: join (ping, multivariant playlist), then the media
// playlist of the current rendition, reloaded per RFC 8216 §6.3.4.
func (v *Viewer) onPlaylist() {
	if !v.enter() {
		return
	}
	defer v.exit()
	v.mu.Lock()
	v.env.rec.lag(v.env.sched.Now().Sub(v.plDue))
	v.plState = laneRunning
	ping := !v.pinged && len(v.env.mirrors) > 1
	v.mu.Unlock()
	if ping {
		v.pingMirrors()
	}
	for v.loadPlaylist() {
	}
}

// loadPlaylist performs one playlist load and schedules what follows. It reports true
// when another load should follow at once (multivariant → media, rendition switch,
// failover).
func (v *Viewer) loadPlaylist() bool {
	v.mu.Lock()
	if v.stopped {
		v.mu.Unlock()
		return false
	}
	mirror := v.mirror()
	master := v.levels == nil
	reqLevel := v.level
	req := &v.plReq // lane-owned: a request passed through an interface would escape
	*req = request{kind: KindPlaylist, ep: v.env.mirrors[mirror], keep: true}
	policy := v.env.cfg.PlaylistPolicy
	if master {
		policy = v.env.cfg.ManifestPolicy
		req.path = req.ep.prefix + v.env.masterPath
	} else if lv := v.levels[v.level]; lv.ep != nil {
		req.ep, req.path = lv.ep, lv.path
	} else {
		req.path = req.ep.prefix + lv.path
	}
	req.ttfbTimeout, req.totalTimeout = policy.TTFB, policy.Total
	loadStart := v.env.sched.Now()
	v.plNow = false
	v.mu.Unlock()

	res := &v.plRes
	*res = response{}
	v.client.get(req, res)
	pl := playlistPool.Get().(*playlist)
	if !failed(res) {
		if err := parsePlaylist(res.body, pl); err != nil {
			res.err = fmt.Errorf("%w: %v", errPlaylist, err)
		} else if !master && pl.multivariant {
			res.err = fmt.Errorf("%w: a rendition URI named another multivariant playlist", errPlaylist)
		}
	}

	// Take what the playlist says before recording it, so that a playlist the player
	// cannot use (a bad URI) is recorded as the malformed answer it is.
	v.mu.Lock()
	aborted := v.stopped
	stale := !master && v.level != reqLevel
	changed := false
	if !aborted && !stale && !failed(res) {
		var err error
		if master {
			err = v.takeLevels(pl)
		}
		if err == nil && !pl.multivariant {
			changed, err = v.takeMedia(pl, fnv64(res.body))
		}
		if err != nil {
			res.err = fmt.Errorf("%w: %v", errPlaylist, err)
		}
	}
	v.mu.Unlock()
	v.env.rec.request(req, mirror, res, aborted)
	// Done with the body and the parse (pl points into the body). Both go back now:
	// once this lane re-arms below, its next callback may start and reuse res.
	res.release()
	playlistPool.Put(pl)

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return false
	}
	if failed(res) {
		return v.retryLocked(&v.plRetry, &v.plState, policy, res, v.armPlaylist)
	}
	v.plRetry = loadRetry{}
	if stale || v.plNow || (master && v.levelsFromMaster) {
		return true // load the (new) rendition's playlist now
	}
	v.kickSegment()
	if v.endList {
		v.plState = laneIdle // the playlist will not change again
		return false
	}
	wait := v.td
	if !changed {
		wait = v.td / 2
	}
	v.armPlaylist(loadStart.Add(wait).Sub(v.env.sched.Now()))
	return false
}

// fnv64 is FNV-1a over b, written out so that hashing a playlist allocates nothing.
func fnv64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

var playlistPool = sync.Pool{New: func() any { return new(playlist) }}

// takeLevels stores the renditions and picks the first by the bandwidth estimate
// (hls.js's automatic start level). A URL that names a media playlist is played as the
// only rendition. Must hold v.mu.
func (v *Viewer) takeLevels(pl *playlist) error {
	if !pl.multivariant {
		v.levels = []level{{path: v.env.masterPath}}
		v.level = 0
		return nil
	}
	v.levelsFromMaster = true
	levels := make([]level, 0, len(pl.variants))
	for _, vr := range pl.variants {
		p, ep, err := resolveRef(v.env.masterPath, vr.uri)
		if err != nil {
			return err
		}
		levels = append(levels, level{bandwidth: vr.bandwidth, path: p, ep: ep})
	}
	sort.SliceStable(levels, func(i, j int) bool { return levels[i].bandwidth < levels[j].bandwidth })
	v.levels = levels
	v.level = chooseLevel(v.bandwidths(), -1, v.bw.estimate(), v.env.cfg.BandwidthFactor, v.env.cfg.BandwidthUpFactor)
	return nil
}

func (v *Viewer) bandwidths() []int64 {
	bws := make([]int64, len(v.levels))
	for i, l := range v.levels {
		bws[i] = l.bandwidth
	}
	return bws
}

// takeMedia absorbs a media playlist. It reports whether the playlist changed since the
// last load (a first load counts as changed): the next reload comes one target duration
// after a load that found it changed, half of one after a load that found it unchanged,
// both measured from when that load began (RFC 8216 §6.3.4). Must hold v.mu.
func (v *Viewer) takeMedia(pl *playlist, hash uint64) (bool, error) {
	changed := !v.loaded || hash != v.lastHash
	if err := v.absorb(pl); err != nil {
		return false, err
	}
	v.loaded = true
	v.lastHash = hash
	v.td = pl.targetDuration
	v.endList = pl.endList
	return changed, nil
}

// liveStart returns the index of the segment to start with and the offset into it: the
// first segment for a finished (ENDLIST) playlist, else the one holding the position
// count target durations before the end (hls.js liveSyncDurationCount, RFC 8216 §6.3.3).
func liveStart(pl *playlist, count int) (int, time.Duration) {
	if pl.endList || len(pl.segments) == 0 {
		return 0, 0
	}
	var total time.Duration
	for _, s := range pl.segments {
		total += s.duration
	}
	target := total - time.Duration(count)*pl.targetDuration
	if target <= 0 {
		return 0, 0
	}
	var at time.Duration
	for i, s := range pl.segments {
		if target < at+s.duration {
			return i, target - at
		}
		at += s.duration
	}
	return len(pl.segments) - 1, 0
}

// absorb takes the playlist's segments from nextSeq on into pending, choosing where to
// start on the first load and re-synchronising when the viewer fell out of the sliding
// window (hls.js seeks back to the live sync position). Must hold v.mu.
func (v *Viewer) absorb(pl *playlist) error {
	n := int64(len(pl.segments))
	if n == 0 {
		return nil
	}
	first := pl.mediaSequence
	last := first + n - 1
	resync := false
	switch {
	case !v.started:
		resync = true
	case v.nextSeq < first, v.nextSeq > last+1+n:
		// Behind the window (long stalls), or the sequence went backwards by more than a
		// window (the origin restarted): start over at the live sync point.
		resync = true
		v.env.rec.resynced()
	}
	if resync {
		i, off := liveStart(pl, v.env.cfg.LiveSyncDurationCount)
		v.nextSeq = first + int64(i)
		v.lastSeq = v.nextSeq - 1
		v.pending = v.pending[:0]
		if !v.started {
			v.startOff = off
			v.started = true
		}
	}
	base := v.levels[v.level].path
	for i, s := range pl.segments {
		seq := first + int64(i)
		if seq <= v.lastSeq {
			continue
		}
		p, ep, err := resolveRef(base, s.uri)
		if err != nil {
			return err
		}
		v.pending = append(v.pending, pendingSeg{seq: seq, duration: s.duration, pdt: s.pdt, path: p, ep: ep})
		v.lastSeq = seq
	}
	if pl.mapURI != nil {
		p, ep, err := resolveRef(base, pl.mapURI)
		if err != nil {
			return err
		}
		if p != v.mapPath {
			v.mapPath, v.mapEP, v.mapDone = p, ep, false
		}
	}
	return nil
}

// onSegment is the segment lane: fetch the next segment, one at a time, while the buffer
// is under MaxBufferLength; wait for the playlist when the next one is not listed yet.
func (v *Viewer) onSegment() {
	if !v.enter() {
		return
	}
	defer v.exit()
	v.mu.Lock()
	v.env.rec.lag(v.env.sched.Now().Sub(v.segDue))
	v.mu.Unlock()
	for v.loadSegment() {
	}
}

// loadSegment fetches one segment (or the init segment) and reports whether to go on.
func (v *Viewer) loadSegment() bool {
	v.mu.Lock()
	if v.stopped {
		v.mu.Unlock()
		return false
	}
	now := v.env.sched.Now()
	v.advance(now)
	if v.stopped { // the stream ended
		v.mu.Unlock()
		return false
	}
	mirror := v.mirror()
	req := &v.segReq // lane-owned, reused: no allocation per segment
	*req = request{kind: KindSegment, ep: v.env.mirrors[mirror]}
	isMap := v.mapPath != "" && !v.mapDone
	var seg pendingSeg
	switch {
	case isMap:
		req.path = v.mapPath
		if v.mapEP != nil {
			req.ep = v.mapEP
		} else {
			req.path = req.ep.prefix + v.mapPath
		}
	default:
		for len(v.pending) > 0 && v.pending[0].seq < v.nextSeq {
			v.popPending()
		}
		if len(v.pending) == 0 || !v.started {
			v.segState = laneIdle // the playlist lane kicks us when the next one is listed
			v.mu.Unlock()
			return false
		}
		if buf := v.bufferedEnd - v.playhead(now); v.playing && buf > v.env.cfg.MaxBufferLength {
			v.armSegment(buf - v.env.cfg.MaxBufferLength)
			v.mu.Unlock()
			return false
		}
		seg = v.pending[0]
		if seg.ep != nil {
			req.ep, req.path = seg.ep, seg.path
		} else {
			req.path = req.ep.prefix + seg.path
		}
	}
	p := v.env.cfg.FragmentPolicy
	req.ttfbTimeout, req.totalTimeout = p.TTFB, p.Total
	v.segState = laneRunning
	v.mu.Unlock()

	res := &v.segRes
	*res = response{}
	v.fetch(req, res, mirror)

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return false
	}
	if failed(res) {
		return v.retryLocked(&v.segRetry, &v.segState, p, res, v.armSegment)
	}
	v.segRetry = loadRetry{}
	if isMap {
		v.mapDone = true
		return true
	}
	if !v.started || seg.seq != v.nextSeq {
		return true // the playlist lane re-synchronised while we loaded: drop it
	}
	v.land(v.env.sched.Now(), seg)
	v.popPending()
	v.nextSeq++

	v.bw.sample(res.total, res.bytes)
	if len(v.levels) > 1 {
		cfg := &v.env.cfg
		if nl := chooseLevel(v.bandwidths(), v.level, v.bw.estimate(), cfg.BandwidthFactor, cfg.BandwidthUpFactor); nl != v.level {
			v.switchLevel(nl)
			v.segState = laneIdle // resumes when the new rendition's playlist is in
			return false
		}
	}
	return true
}

func (v *Viewer) popPending() {
	copy(v.pending, v.pending[1:])
	v.pending[len(v.pending)-1] = pendingSeg{}
	v.pending = v.pending[:len(v.pending)-1]
}

// switchLevel moves to rendition nl: its playlist is loaded at once and segments continue
// from the same media sequence number. Must hold v.mu.
func (v *Viewer) switchLevel(nl int) {
	v.env.rec.levelSwitched(nl > v.level)
	v.level = nl
	v.loaded = false
	v.lastHash = 0
	v.pending = v.pending[:0]
	v.lastSeq = v.nextSeq - 1
	v.mapPath, v.mapEP, v.mapDone = "", nil, false
	v.kickPlaylist()
}

// playhead is the playback position at now. Must hold v.mu.
func (v *Viewer) playhead(now time.Time) time.Duration {
	if !v.playing {
		return v.nextStart + v.startOff
	}
	if v.stalled {
		return v.bufferedEnd
	}
	p := v.anchorPos + now.Sub(v.anchorAt)
	if p > v.bufferedEnd {
		p = v.bufferedEnd
	}
	return p
}

// advance brings the playback model to now: if the playhead reached the end of the
// buffer since the last look, a stall began at that exact moment (however late the
// look) — or, when the stream has ended and everything was played, the session ends.
// Must hold v.mu.
func (v *Viewer) advance(now time.Time) {
	if !v.playing || v.stalled || v.stopped {
		return
	}
	if v.anchorPos+now.Sub(v.anchorAt) < v.bufferedEnd {
		return
	}
	dry := v.anchorAt.Add(v.bufferedEnd - v.anchorPos)
	if v.endList && len(v.pending) == 0 && v.segState != laneRunning && v.started {
		v.endSession(reasonEnd, dry) // played to the end of a finished stream
		return
	}
	v.stalled = true
	v.stallStart = dry
	v.stalls++
	v.env.rec.stallBegan()
}

// land adds a fetched segment to the buffer at time t. Must hold v.mu.
func (v *Viewer) land(t time.Time, seg pendingSeg) {
	v.advance(t)
	if v.stopped {
		return
	}
	segStart := v.nextStart
	v.bufferedEnd = segStart + seg.duration
	v.nextStart = v.bufferedEnd
	if !seg.pdt.IsZero() {
		v.dates[v.nDates%len(v.dates)] = datePoint{pos: segStart, pdt: seg.pdt}
		v.nDates++
	}
	switch {
	case !v.playing:
		// First frame: playback starts at the live sync position inside this segment.
		v.playing = true
		v.firstFrame = t
		v.anchorPos = segStart + v.startOff
		v.anchorAt = t
		v.startupTook = t.Sub(v.joinAt)
		v.env.rec.startupTook(v.startupTook)
	case v.stalled:
		d := t.Sub(v.stallStart)
		v.stallTime += d
		v.stalled = false
		v.env.rec.stallEnded(d, true)
		v.anchorPos = segStart
		v.anchorAt = t
	}
	played := t.Sub(v.firstFrame) - v.stallTime
	v.env.rec.playedFor(played - v.playedRep)
	v.playedRep = played

	if pdt, ok := v.dateAt(v.playhead(t)); ok {
		v.env.rec.liveLatency(t.Sub(pdt))
	}
	v.armDry(v.bufferedEnd - v.playhead(t))
}

// dateAt maps a media position to its program date-time through the most recent
// segment starting at or before it. Must hold v.mu.
func (v *Viewer) dateAt(pos time.Duration) (time.Time, bool) {
	n := v.nDates
	if n == 0 {
		return time.Time{}, false
	}
	k := len(v.dates)
	if n < k {
		k = n
	}
	var best datePoint
	found := false
	oldest := v.dates[(n-k)%len(v.dates)]
	for i := 0; i < k; i++ {
		d := v.dates[(n-1-i)%len(v.dates)]
		if d.pos <= pos && (!found || d.pos > best.pos) {
			best, found = d, true
		}
	}
	if !found {
		best = oldest
	}
	return best.pdt.Add(pos - best.pos), true
}

// onDry fires when the buffer is due to run dry.
func (v *Viewer) onDry() {
	if !v.enter() {
		return
	}
	defer v.exit()
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.env.sched.Now()
	v.env.rec.lag(now.Sub(v.dryDue))
	v.advance(now)
	if v.playing && !v.stalled && !v.stopped {
		// Fired early (a segment landed meanwhile and re-armed it): look again later.
		if left := v.bufferedEnd - v.playhead(now); left > 0 {
			v.armDry(left)
		}
	}
}

// onHeartbeat calls the counter every HeartbeatInterval on a fixed schedule, like a
// page's setInterval: a slow answer does not delay the next call.
func (v *Viewer) onHeartbeat() {
	if !v.enter() {
		return
	}
	defer v.exit()
	v.mu.Lock()
	now := v.env.sched.Now()
	v.env.rec.lag(now.Sub(v.hbDue))
	next := v.hbDue.Add(v.env.cfg.HeartbeatInterval)
	for !next.After(now) {
		next = next.Add(v.env.cfg.HeartbeatInterval)
	}
	if v.stopped {
		v.mu.Unlock()
		return
	}
	v.armHeartbeat(next.Sub(now))
	v.mu.Unlock()

	p := v.env.cfg.HeartbeatPolicy
	req := request{kind: KindHeartbeat, ep: v.env.counter, path: v.env.counterPath, keep: true,
		ttfbTimeout: p.TTFB, totalTimeout: p.Total}
	var res response
	v.client.get(&req, &res)
	v.mu.Lock()
	aborted := v.stopped
	v.mu.Unlock()
	if !failed(&res) {
		if n, ok := parseViewerCount(res.body); !ok {
			res.err = fmt.Errorf("%w: counter answer %q has no viewers count", errMalformedResponse, clip(res.body))
		} else if !aborted {
			// Compared with the viewers in a session now, this one included; an answer
			// that lands after the viewer left would be compared with a truth it is no
			// longer part of.
			v.env.rec.counterAnswered(n)
		}
	}
	v.env.rec.request(&req, 0, &res, aborted)
	res.release()
}

// counterAnswer is the counter's reply (DESIGN.md: {"viewers": N}).
type counterAnswer struct {
	Viewers *int64 `json:"viewers"`
}

// parseViewerCount reads N from a counter answer.
func parseViewerCount(b []byte) (int64, bool) {
	var a counterAnswer
	if err := json.Unmarshal(b, &a); err != nil || a.Viewers == nil {
		return 0, false
	}
	return *a.Viewers, true
}
