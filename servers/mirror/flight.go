package mirror

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// staleHoldoff is how long after a failed fetch a key is served stale without asking
// the upstream again.
const staleHoldoff = time.Second

// flight is one upstream fetch that any number of requests stream from. It runs on the
// server's context, not a requester's, so the first requester leaving does not cancel
// it for the others.
type flight struct {
	key  string
	kind kind

	// ready is closed once status and header are known, or err is set. The fields
	// below it are written only by the fetch goroutine before ready closes and are
	// read-only afterwards.
	ready  chan struct{}
	status int
	header http.Header
	err    error // the fetch failed before there was a response to relay
	bypass bool  // the object is too large to cache: waiters stream it themselves

	mu      sync.Mutex // protects body, done, bodyErr and wake
	body    []byte     // bytes received so far; bytes below len(body) never change
	done    bool
	bodyErr error         // non-nil when the body ended badly (waiters cut the connection)
	wake    chan struct{} // closed and replaced whenever body grows or the fetch ends

	readyClosed bool // owned by the fetch goroutine
}

func newFlight(key string, k kind) *flight {
	return &flight{key: key, kind: k, ready: make(chan struct{}), wake: make(chan struct{})}
}

// snapshot returns what has arrived so far and a channel that closes on progress.
func (f *flight) snapshot() (body []byte, done bool, err error, wake <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.body, f.done, f.bodyErr, f.wake
}

// publish makes body visible to waiters and wakes them.
func (f *flight) publish(body []byte) {
	f.mu.Lock()
	f.body = body
	close(f.wake)
	f.wake = make(chan struct{})
	f.mu.Unlock()
}

// end finishes the body, successfully when err is nil.
func (f *flight) end(err error) {
	f.mu.Lock()
	if !f.done {
		f.done = true
		f.bodyErr = err
		close(f.wake)
	}
	f.mu.Unlock()
}

// openReady releases the waiters to read status and header.
func (f *flight) openReady() {
	if !f.readyClosed {
		f.readyClosed = true
		close(f.ready)
	}
}

// close ends the flight wherever it stands, with err (nil: success). Before the response,
// waiters answer an error (or stale); during the body, they cut their connections.
func (f *flight) close(err error) {
	if !f.readyClosed && err != nil {
		f.err = err
	}
	f.openReady()
	f.end(err)
}

// fetch runs one upstream request for f, files the result in the cache, and only then
// tells the waiters how it ended: a request arriving after a failure starts a new fetch
// (or finds the bypass marker) instead of joining the failed one.
func (s *Server) fetch(f *flight) {
	store, failed, err := s.runFetch(f)
	s.finish(f, store, failed)
	f.close(err)
}

// runFetch does the upstream request. It returns the object to cache (nil: none),
// whether the upstream failed (so stale copies are held for a moment), and the error the
// flight ends with. A panic anywhere in it reaches every waiter as an error instead of
// leaving them waiting forever.
func (s *Server) runFetch(f *flight) (store *object, failed bool, ferr error) {
	start := time.Now()
	k := f.kind
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("upstream fetch panicked", "key", f.key, "panic", p, "stack", string(debug.Stack()))
			s.m.upstreamErrors.WithLabelValues(kindNames[k], classPanic).Inc()
			store, failed, ferr = nil, true, fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.upstreamPrefix+f.key, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header = s.upHeader.Clone()
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return nil, true, s.upstreamFailed(k, start, err)
	}
	defer resp.Body.Close()
	s.m.upstreamRequests.WithLabelValues(kindNames[k], statusClass(resp.StatusCode)).Inc()
	fetched := s.cfg.Clock.Now()
	cl := resp.ContentLength
	if cl > s.cfg.MaxObjectSize {
		f.status, f.bypass = resp.StatusCode, true
		f.openReady()
		f.end(nil)
		s.m.upstreamDuration[k].Observe(time.Since(start).Seconds())
		return s.bypassMarker(k, fetched), false, nil
	}
	header := relayHeader(resp.Header)
	if cl >= 0 {
		header["Content-Length"] = []string{strconv.FormatInt(cl, 10)}
	}
	f.status, f.header = resp.StatusCode, header
	if resp.StatusCode >= 500 {
		s.m.upstreamErrors.WithLabelValues(kindNames[k], classStatus5xx).Inc()
	}
	f.openReady()

	// A body that stops arriving for UpstreamTimeout ends the fetch.
	var timedOut atomic.Bool
	idle := time.AfterFunc(s.cfg.UpstreamTimeout, func() { timedOut.Store(true); cancel() })
	defer idle.Stop()

	buf := make([]byte, 0, bodyCapacity(cl, s.cfg.MaxObjectSize))
	for {
		if len(buf) == cap(buf) {
			if cl >= 0 {
				if err := expectEOF(resp.Body); err != nil {
					return s.bodyFailed(f, start, err, &timedOut)
				}
				break
			}
			if int64(cap(buf)) >= s.cfg.MaxObjectSize {
				s.m.upstreamErrors.WithLabelValues(kindNames[k], classTooLarge).Inc()
				s.m.upstreamDuration[k].Observe(time.Since(start).Seconds())
				s.cfg.Logger.Warn("upstream body without Content-Length exceeds the max object size; it will stream through uncached",
					"key", f.key, "max_object_size", s.cfg.MaxObjectSize)
				return s.bypassMarker(k, fetched), false, errTooBig
			}
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), s.cfg.MaxObjectSize))
			copy(grown, buf)
			buf = grown
		}
		n, rerr := resp.Body.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			buf = buf[:len(buf)+n]
			idle.Reset(s.cfg.UpstreamTimeout)
			f.publish(buf)
			s.m.upstreamBytes[k].Add(float64(n))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return s.bodyFailed(f, start, rerr, &timedOut)
		}
	}
	s.m.upstreamDuration[k].Observe(time.Since(start).Seconds())
	// The flight ends (fetch calls close) only once the object is in the cache, so a
	// request that follows a complete answer finds a hit.
	if cl < 0 && cap(buf)-len(buf) > len(buf)/4 {
		buf = append([]byte(nil), buf...) // don't keep the growth slack in the cache
	}
	return s.objectFor(k, resp, header, buf, fetched), resp.StatusCode >= 500, nil
}

// bodyCapacity is the first buffer size for a body: exact when the length is known.
func bodyCapacity(contentLength, maxObject int64) int64 {
	if contentLength >= 0 {
		return contentLength
	}
	return min(32<<10, maxObject)
}

// expectEOF checks that a body read up to its Content-Length has nothing more.
func expectEOF(body io.Reader) error {
	var one [1]byte
	n, err := body.Read(one[:])
	switch {
	case n > 0:
		return fmt.Errorf("upstream sent more than its Content-Length")
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	}
	return nil
}

// bodyFailed counts and logs a body that broke off, and returns runFetch's results.
func (s *Server) bodyFailed(f *flight, start time.Time, err error, timedOut *atomic.Bool) (*object, bool, error) {
	if timedOut.Load() {
		err = fmt.Errorf("%w: body paused longer than %v", errTimeout, s.cfg.UpstreamTimeout)
	}
	s.m.upstreamErrors.WithLabelValues(kindNames[f.kind], classify(err)).Inc()
	s.m.upstreamDuration[f.kind].Observe(time.Since(start).Seconds())
	if s.ctx.Err() == nil {
		s.cfg.Logger.Warn("upstream body failed", "key", f.key, "err", err)
	}
	return nil, true, err
}

// objectFor decides whether and for how long a complete response is cached. A 200 is
// always kept (even with no freshness) so it can serve as a stale copy; 404/410 only
// with a NegativeTTL; nothing else.
func (s *Server) objectFor(k kind, resp *http.Response, header http.Header, body []byte, fetched time.Time) *object {
	var ttl time.Duration
	switch resp.StatusCode {
	case http.StatusOK:
		ttl = s.cfg.segmentTTL
		if k == kindPlaylist {
			ttl = s.cfg.playlistTTL
		}
	case http.StatusNotFound, http.StatusGone:
		if s.cfg.negativeTTL <= 0 {
			return nil
		}
		ttl = s.cfg.negativeTTL
	default:
		return nil
	}
	if s.cfg.HonorCacheControl {
		if d, noStore, ok := parseCacheControl(resp.Header.Values("Cache-Control")); ok {
			if noStore {
				return nil
			}
			ttl = d
		}
	}
	h := make(http.Header, len(header)+1)
	for name, v := range header {
		h[name] = v
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	return &object{status: resp.StatusCode, header: h, body: body, expires: fetched.Add(ttl)}
}

// bypassMarker remembers for one TTL that a key is too large to cache.
func (s *Server) bypassMarker(k kind, now time.Time) *object {
	ttl := s.cfg.segmentTTL
	if k == kindPlaylist {
		ttl = s.cfg.playlistTTL
	}
	return &object{bypass: true, expires: now.Add(ttl)}
}

// finish files a finished fetch: it stops being joinable, its object (if any) enters the
// cache, and a failure holds the stale copy for staleHoldoff.
func (s *Server) finish(f *flight, store *object, failed bool) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight[f.key] == f {
		delete(s.inflight, f.key)
	}
	e := s.cache[f.key]
	if store == nil {
		if failed && e != nil {
			e.holdUntil = now.Add(staleHoldoff)
		}
		return
	}
	size := store.size(f.key)
	if size > s.cfg.CacheSize {
		return
	}
	if e != nil {
		s.lru.remove(e)
		e.obj, e.size, e.holdUntil = store, size, time.Time{}
	} else {
		e = &entry{key: f.key, obj: store, size: size}
		s.cache[f.key] = e
	}
	s.lru.pushFront(e)
	for s.lru.bytes > s.cfg.CacheSize && s.lru.tail != nil && s.lru.tail != e {
		old := s.lru.tail
		s.lru.remove(old)
		delete(s.cache, old.key)
		s.m.evictions.Inc()
	}
}
