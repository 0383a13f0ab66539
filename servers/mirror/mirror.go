// Package mirror is a caching reverse proxy for one live HLS upstream: what the relay's
// nginx proxy_cache mirrors did, plus the things they lacked. Playlists and segments
// have their own freshness; concurrent misses for one object make one upstream request
// whose bytes every waiter receives as they arrive; a failing or slow upstream is
// answered from the last good copy; memory is bounded by an LRU by bytes; client
// connections can be capped (shed or queue), slow clients time out, and running out of
// file descriptors is survived, counted and logged once per second.
//
// Use it as a library (New, Handler, Serve, Close) or as `stampede mirror`.
package mirror

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stampede-live/stampede/internal/serverkit"
)

// Server is a caching mirror of one upstream.
type Server struct {
	cfg       resolved
	transport http.RoundTripper
	upHeader  http.Header // headers of every upstream request (read-only)
	ctx       context.Context
	cancel    context.CancelFunc // ends ctx: aborts fetches and Serve
	m         *metrics
	metricsH  http.Handler
	fds       *fdCounter
	emfileLog rateLog
	closeOnce sync.Once

	mu       sync.Mutex // protects cache, lru and inflight
	cache    map[string]*entry
	lru      lru
	inflight map[string]*flight // fetches that requests may join (coalescing)
}

var _ http.Handler = (*Server)(nil)

// New validates cfg and returns a mirror ready to serve.
func New(cfg Config) (*Server, error) {
	rc, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      rc,
		cache:    map[string]*entry{},
		inflight: map[string]*flight{},
		fds:      newFDCounter(),
		upHeader: http.Header{"User-Agent": {"stampede-mirror"}},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.transport = rc.Transport
	if s.transport == nil {
		s.transport = s.newTransport()
	}
	reg, r := serverkit.NewRegistry(rc.Labels)
	s.m = newMetrics(r, s.cacheStats, s.fds)
	// ContinueOnError: when descriptors run out the process collector cannot read /proc,
	// and /metrics must still answer with everything else (the EMFILE count above all).
	s.metricsH = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return s, nil
}

// newTransport builds the upstream keep-alive pool. Proxy is nil on purpose: the mirror
// talks to its upstream directly, whatever HTTP_PROXY says.
func (s *Server) newTransport() *http.Transport {
	d := &net.Dialer{Timeout: s.cfg.UpstreamTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil && isEMFILE(err) {
				s.m.emfile.WithLabelValues(opDial).Inc()
				s.emfileLog.warn(s.cfg.Logger, "out of file descriptors dialing the upstream; answering 503 or stale", "err", err)
				return nil, errEMFILE
			}
			return c, err
		},
		MaxIdleConns:          s.cfg.UpstreamConns,
		MaxIdleConnsPerHost:   s.cfg.UpstreamConns,
		MaxConnsPerHost:       s.cfg.UpstreamConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   s.cfg.UpstreamTimeout,
		ResponseHeaderTimeout: s.cfg.UpstreamTimeout,
		DisableCompression:    true, // relay bytes exactly as the upstream sent them
	}
}

// Handler serves the mirror: /metrics, /healthz, and everything else from the cache or
// the upstream. It is the Server itself; Serve adds connection management around it.
func (s *Server) Handler() http.Handler { return s }

// Close aborts upstream fetches, stops Serve and releases the upstream pool. It is safe
// to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		if t, ok := s.transport.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
		s.fds.close()
	})
	return nil
}

func (s *Server) cacheStats() (int64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.bytes, s.lru.count
}

// ServeHTTP routes /metrics and /healthz, refuses what must not be proxied, and serves
// the rest through the cache.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		s.metricsH.ServeHTTP(w, r)
		return
	case "/healthz":
		serverkit.Healthz(w, r)
		return
	}
	key, k, status, reason := checkRequest(r)
	if status != 0 {
		s.m.rejected.WithLabelValues(reason).Inc()
		if status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", "GET, HEAD")
		}
		writeError(w, status, "mirror: refused ("+reason+"): this mirror serves GET and HEAD of paths on its own upstream only")
		return
	}
	if k == kindOther {
		s.passThrough(w, r, key, k)
		return
	}
	s.serveCached(w, r, key, k)
}

// serveCached answers from a fresh copy, or joins or starts the upstream fetch.
func (s *Server) serveCached(w http.ResponseWriter, r *http.Request, key string, k kind) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	e := s.cache[key]
	if e != nil && now.Before(e.obj.expires) {
		s.lru.moveToFront(e)
		o := e.obj
		s.mu.Unlock()
		if o.bypass {
			s.passThrough(w, r, key, k)
			return
		}
		s.writeObject(w, r, o, k, resultHit)
		return
	}
	if e != nil && s.cfg.StaleWhileRevalidate > 0 && e.obj.status == http.StatusOK && !e.obj.bypass &&
		now.Before(e.obj.expires.Add(s.cfg.StaleWhileRevalidate)) {
		// Serve the expired copy now; one background fetch refreshes it.
		s.lru.moveToFront(e)
		o := e.obj
		if s.inflight[key] == nil && !now.Before(e.holdUntil) { // not while a failure is fresh
			f := newFlight(key, k)
			s.inflight[key] = f
			go s.fetch(f)
		}
		s.mu.Unlock()
		s.writeObject(w, r, o, k, resultStale)
		return
	}
	var stale *object
	if e != nil && s.cfg.staleIfError > 0 && e.obj.status == http.StatusOK && !e.obj.bypass {
		stale = e.obj
		if now.Before(e.holdUntil) { // the upstream just failed for this key: don't ask again yet
			s.lru.moveToFront(e)
			s.mu.Unlock()
			s.writeObject(w, r, stale, k, resultStale)
			return
		}
	}
	res := resultCoalesced
	f := s.inflight[key]
	if f == nil || s.cfg.DisableCoalescing {
		f = newFlight(key, k)
		res = resultMiss
		if !s.cfg.DisableCoalescing {
			s.inflight[key] = f
		}
		go s.fetch(f)
	}
	s.mu.Unlock()
	s.serveFlight(w, r, f, k, res, stale)
}

// writeObject writes a complete cached response.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, o *object, k kind, res result) {
	h := w.Header()
	for name, v := range o.header {
		h[name] = v
	}
	h["X-Cache"] = xCache[res]
	w.WriteHeader(o.status)
	s.m.requests[k][res].Inc()
	if r.Method == http.MethodHead {
		return
	}
	n, _ := w.Write(o.body)
	s.m.sentBytes[k].Add(float64(n))
}

// serveFlight streams a response from an upstream fetch in progress (or just finished),
// falling back to stale when the fetch fails or is slower than StaleIfError.
func (s *Server) serveFlight(w http.ResponseWriter, r *http.Request, f *flight, k kind, res result, stale *object) {
	ctx := r.Context()
	if stale != nil {
		t := s.cfg.Clock.NewTimer(s.cfg.staleIfError)
		select {
		case <-f.ready:
			t.Stop()
		case <-t.C():
			s.writeObject(w, r, stale, k, resultStale)
			return
		case <-ctx.Done():
			t.Stop()
			s.m.requests[k][res].Inc()
			return
		}
	} else {
		select {
		case <-f.ready:
		case <-ctx.Done():
			s.m.requests[k][res].Inc()
			return
		}
	}
	if f.err != nil || f.status >= 500 {
		if stale != nil {
			s.writeObject(w, r, stale, k, resultStale)
			return
		}
		if f.err != nil {
			s.m.requests[k][res].Inc()
			writeUpstreamError(w, f.err)
			return
		}
	}
	if f.bypass {
		s.passThrough(w, r, f.key, k)
		return
	}
	s.m.requests[k][res].Inc()
	h := w.Header()
	for name, v := range f.header {
		h[name] = v
	}
	h["X-Cache"] = xCache[res]
	w.WriteHeader(f.status)
	if r.Method == http.MethodHead {
		return
	}
	flusher, _ := w.(http.Flusher)
	off := 0
	for {
		b, done, err, wake := f.snapshot()
		if off < len(b) {
			n, werr := w.Write(b[off:])
			off += n
			s.m.sentBytes[k].Add(float64(n))
			if werr != nil {
				return
			}
			if !done && flusher != nil {
				flusher.Flush() // a waiter gets each chunk as it arrives, not the whole segment
			}
			continue
		}
		if done {
			if err != nil {
				// Headers are out: the only honest way to say "incomplete" is to cut the
				// connection, so the client sees a truncated body instead of a short one.
				panic(http.ErrAbortHandler)
			}
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// passThrough streams one request straight from the upstream without caching it: for
// objects too large to cache and for paths that are not HLS.
func (s *Server) passThrough(w http.ResponseWriter, r *http.Request, key string, k kind) {
	s.m.requests[k][resultBypass].Inc()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, s.cfg.upstreamPrefix+key, nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, "mirror: "+err.Error())
		return
	}
	req.Header = s.upHeader.Clone()
	start := time.Now()
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		err = s.upstreamFailed(k, start, err)
		writeUpstreamError(w, err)
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for name, v := range relayHeader(resp.Header) {
		h[name] = v
	}
	if resp.ContentLength >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	h["X-Cache"] = xCache[resultBypass]
	w.WriteHeader(resp.StatusCode)
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(writerOnly{w}, resp.Body, *bp)
	copyBufs.Put(bp)
	s.m.sentBytes[k].Add(float64(n))
	s.m.upstreamBytes[k].Add(float64(n))
	s.m.upstreamDuration[k].Observe(time.Since(start).Seconds())
	s.m.upstreamRequests.WithLabelValues(kindNames[k], statusClass(resp.StatusCode)).Inc()
	if err != nil && r.Context().Err() == nil {
		s.m.upstreamErrors.WithLabelValues(kindNames[k], classify(err)).Inc()
		panic(http.ErrAbortHandler)
	}
}

// writerOnly hides ReadFrom so io.CopyBuffer uses our pooled buffer.
type writerOnly struct{ io.Writer }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relayedHeaders are the upstream response headers a client gets. Hop-by-hop and
// cookie headers stay behind; Content-Length is set by the mirror.
var relayedHeaders = []string{"Content-Type", "Cache-Control", "Expires", "Last-Modified", "Etag",
	"Content-Encoding", "Access-Control-Allow-Origin", "Retry-After"}

func relayHeader(src http.Header) http.Header {
	h := make(http.Header, len(relayedHeaders)+2)
	for _, name := range relayedHeaders {
		if v, ok := src[name]; ok {
			h[name] = append([]string(nil), v...)
		}
	}
	return h
}

// Errors a fetch can end with before any response, mapped to statuses by
// writeUpstreamError.
var (
	errEMFILE  = errors.New("out of file descriptors")
	errTimeout = errors.New("upstream timed out")
	errTooBig  = errors.New("upstream body exceeds MaxObjectSize and has no Content-Length")
	errPanic   = errors.New("upstream fetch panicked")
)

// writeUpstreamError answers a request whose upstream fetch failed before a response:
// 503 + Retry-After when this process is out of descriptors (it may recover in a
// moment), 504 on timeout, 502 otherwise.
func writeUpstreamError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errEMFILE):
		writeError(w, http.StatusServiceUnavailable, "mirror: out of file descriptors, retry shortly")
	case errors.Is(err, errTimeout):
		writeError(w, http.StatusGatewayTimeout, "mirror: upstream timed out")
	default:
		writeError(w, http.StatusBadGateway, "mirror: upstream failed: "+err.Error())
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// upstreamFailed counts a failed upstream request and returns the error to answer with.
func (s *Server) upstreamFailed(k kind, start time.Time, err error) error {
	class := classify(err)
	s.m.upstreamRequests.WithLabelValues(kindNames[k], outcomeError).Inc()
	s.m.upstreamErrors.WithLabelValues(kindNames[k], class).Inc()
	s.m.upstreamDuration[k].Observe(time.Since(start).Seconds())
	switch class {
	case classEMFILE:
		return errEMFILE
	case classTimeout:
		return errTimeout
	}
	return err
}

// classify names an upstream error for metrics.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errEMFILE) || isEMFILE(err):
		return classEMFILE
	case errors.Is(err, errTooBig):
		return classTooLarge
	case errors.Is(err, errPanic):
		return classPanic
	case errors.Is(err, errTimeout) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return classTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return classRefused
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF):
		return classTruncated
	case isMalformed(err):
		return classMalformed
	}
	return classOther
}

// isMalformed recognises net/http's errors for a response that is not HTTP.
func isMalformed(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"malformed http", "bad content-length", "invalid", "unsupported transfer encoding", "malformed mime"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	}
	return "2xx"
}
