package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// request is one GET a viewer makes.
type request struct {
	kind Kind
	ep   *endpoint
	path string // absolute path with query
	keep bool   // keep the body (playlists, heartbeats); segments are counted and dropped
	// Timeouts as hls.js's load policies: time to the first response byte, then the
	// whole load, both from the request's start.
	ttfbTimeout  time.Duration
	totalTimeout time.Duration
}

// response is what came back. body is valid until release.
type response struct {
	code  int
	start time.Time
	ttfb  time.Duration // start → first response byte (httptrace's GotFirstResponseByte)
	total time.Duration // start → last body byte
	bytes int64         // body bytes received (all of them, also when discarded)
	body  []byte        // the kept body
	// sent is true once the request was written: the server may have counted it.
	sent bool
	err  error

	bodyBuf *[]byte // pooled storage behind body
}

// release returns the kept body to its pool.
func (r *response) release() {
	if r.bodyBuf != nil {
		*r.bodyBuf = r.body[:0]
		bodyPool.Put(r.bodyBuf)
		r.bodyBuf, r.body = nil, nil
	}
}

// fetcher is how a viewer speaks HTTP: its own HTTP/1.1 client (the default, small and
// cheap enough for thousands of viewers per core) or net/http with httptrace (the
// reference it is checked against, and the way to reach HTTP/2-only servers).
type fetcher interface {
	get(req *request, res *response)
	// closeIdle closes idle connections to addr (a mirror not chosen after the ping).
	closeIdle(addr string)
	// closeAll closes every connection, aborting requests in flight; later gets fail.
	closeAll()
}

// Buffer sizes. A request waits for its answer holding only a small buffer: when a
// slow server keeps thousands of viewers waiting at once, they hold 4 KB each, not 32.
// The large buffer is taken when the answer starts to arrive; 32 KB reads a 125 KB
// segment in a handful of calls.
const (
	headBufSize = 4 << 10
	readBufSize = 32 << 10
)

var (
	headPool = sync.Pool{New: func() any { b := make([]byte, headBufSize); return &b }}
	readPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
)

// aLongTimeAgo is a deadline in the past: setting it aborts blocked reads and writes.
var aLongTimeAgo = time.Unix(1, 0)

// httpClient is a viewer's own HTTP/1.1 client. Like a browser tab it dials from the
// viewer's own address and keeps its connections alive between requests, opening a
// second one to a host only when the first is busy (a playlist reload overlapping a
// segment download). All reads go through buffers borrowed from a shared pool for the
// duration of one response, so an idle viewer holds no buffer at all.
type httpClient struct {
	sched     scheduler
	local     net.Addr // source address to dial from; nil lets the kernel choose
	tls       *tls.Config
	userAgent string
	idleAfter time.Duration // close connections idle this long
	// dial replaces the dialer (tests watch connections with it); nil dials TCP from
	// local.
	dial func(network, addr string, timeout time.Duration) (net.Conn, error)

	mu     sync.Mutex // protects conns and closed
	conns  []*hconn   // every open connection, idle or busy
	closed bool
}

var _ fetcher = (*httpClient)(nil)

// hconn is one keep-alive connection.
type hconn struct {
	nc        net.Conn
	addr      string
	busy      bool      // guarded by httpClient.mu
	used      bool      // carried a whole response before (a failure may be a keep-alive race)
	idleSince time.Time // guarded by httpClient.mu
	abort     timer     // the request timeout; only the request using the connection touches it
	fired     atomic.Bool
}

// onTimeout aborts the request in progress on the connection.
func (hc *hconn) onTimeout() {
	hc.fired.Store(true)
	hc.nc.SetDeadline(aLongTimeAgo)
}

func (c *httpClient) acquire(ep *endpoint, timeout time.Duration) (*hconn, error) {
	now := c.sched.Now()
	var stale []*hconn
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errStopped
	}
	var best *hconn
	keep := c.conns[:0]
	for _, hc := range c.conns {
		if !hc.busy && c.idleAfter > 0 && now.Sub(hc.idleSince) >= c.idleAfter {
			stale = append(stale, hc)
			continue
		}
		keep = append(keep, hc)
		if !hc.busy && hc.addr == ep.addr && (best == nil || hc.idleSince.After(best.idleSince)) {
			best = hc
		}
	}
	clear(c.conns[len(keep):])
	c.conns = keep
	if best != nil {
		best.busy = true
	}
	c.mu.Unlock()
	for _, hc := range stale {
		hc.nc.Close()
	}
	if best != nil {
		return best, nil
	}

	var nc net.Conn
	var err error
	if c.dial != nil {
		nc, err = c.dial("tcp", ep.addr, timeout)
	} else {
		d := net.Dialer{LocalAddr: c.local, Timeout: timeout}
		nc, err = d.DialContext(context.Background(), "tcp", ep.addr)
	}
	if err != nil {
		return nil, err
	}
	if ep.https {
		var cfg *tls.Config
		if c.tls != nil {
			cfg = c.tls.Clone() // shared by every viewer: never written
		} else {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(ep.addr)
		}
		cfg.NextProtos = []string{"http/1.1"}
		nc = tls.Client(nc, cfg)
	}
	hc := &hconn{nc: nc, addr: ep.addr, busy: true}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return nil, errStopped
	}
	c.conns = append(c.conns, hc)
	c.mu.Unlock()
	return hc, nil
}

// release makes hc idle again, or closes it when it cannot carry another request.
func (c *httpClient) release(hc *hconn, reusable bool) {
	c.mu.Lock()
	if reusable && !c.closed {
		hc.busy = false
		hc.used = true
		hc.idleSince = c.sched.Now()
		c.mu.Unlock()
		return
	}
	for i, x := range c.conns {
		if x == hc {
			last := len(c.conns) - 1
			copy(c.conns[i:], c.conns[i+1:])
			c.conns[last] = nil
			c.conns = c.conns[:last]
			break
		}
	}
	c.mu.Unlock()
	hc.nc.Close()
}

func (c *httpClient) closeIdle(addr string) {
	var idle []*hconn
	c.mu.Lock()
	keep := c.conns[:0]
	for _, hc := range c.conns {
		if !hc.busy && hc.addr == addr {
			idle = append(idle, hc)
			continue
		}
		keep = append(keep, hc)
	}
	clear(c.conns[len(keep):])
	c.conns = keep
	c.mu.Unlock()
	for _, hc := range idle {
		hc.nc.Close()
	}
}

func (c *httpClient) closeAll() {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for _, hc := range conns {
		hc.nc.Close()
	}
}

// get performs req. A request that fails on a reused connection before any byte of
// the answer arrived is retried once on a new connection, as browsers and net/http do
// for idempotent requests (the server closed an idle keep-alive connection just as we
// used it); that first attempt is not counted.
func (c *httpClient) get(req *request, res *response) {
	res.start = c.sched.Now()
	for attempt := 0; ; attempt++ {
		hc, err := c.acquire(req.ep, req.ttfbTimeout)
		if err != nil {
			res.err = err
			break
		}
		if retry := c.roundTrip(hc, req, res); retry && attempt == 0 {
			*res = response{start: res.start}
			continue
		}
		break
	}
	res.total = c.sched.Now().Sub(res.start)
}

// roundTrip writes req on hc and reads the answer. It reports whether the failure
// looks like a keep-alive race worth one retry.
func (c *httpClient) roundTrip(hc *hconn, req *request, res *response) (retry bool) {
	hp := headPool.Get().(*[]byte)
	buf := *hp
	defer func() {
		if hp != nil {
			headPool.Put(hp)
		}
	}()

	// The connection's abort timer enforces both timeouts: it first runs for the
	// time-to-first-byte budget, then is re-armed for what is left of the total budget.
	// Firing, it pushes the connection's deadline into the past, which unblocks the read
	// with an error. One timer per connection, re-armed per request: no allocation.
	nc := hc.nc
	hc.fired.Store(false)
	first := req.ttfbTimeout - c.sched.Now().Sub(res.start)
	if hc.abort == nil {
		hc.abort = c.sched.AfterFunc(first, hc.onTimeout)
	} else {
		hc.abort.Reset(first)
	}
	reusable := false
	defer func() {
		if !hc.abort.Stop() || hc.fired.Load() {
			// It fired, or its callback is running right now and is about to poison
			// the connection's deadline: the connection must not carry another request.
			reusable = false
		}
		if hc.fired.Load() && res.err != nil {
			res.err = fmt.Errorf("%w: %v", errTimeout, res.err)
		}
		c.release(hc, reusable)
	}()

	w := append(buf[:0], "GET "...)
	w = append(w, req.path...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, req.ep.host...)
	w = append(w, "\r\nUser-Agent: "...)
	w = append(w, c.userAgent...)
	w = append(w, "\r\nAccept: */*\r\n\r\n"...)
	if _, err := nc.Write(w); err != nil {
		res.err = err
		return hc.used && !hc.fired.Load() && isRaceError(err)
	}
	res.sent = true

	rd := respReader{src: nc, buf: buf}
	if err := rd.fill(); err != nil {
		res.err = err
		return hc.used && !hc.fired.Load() && isRaceError(err)
	}
	now := c.sched.Now()
	res.ttfb = now.Sub(res.start)
	if hc.abort.Stop() {
		hc.abort.Reset(req.totalTimeout - now.Sub(res.start))
	}
	// The answer is arriving: move to a large buffer for the rest of it.
	bp := readPool.Get().(*[]byte)
	defer readPool.Put(bp)
	rd.w = copy(*bp, rd.buf[rd.r:rd.w])
	rd.r = 0
	rd.buf = *bp
	headPool.Put(hp)
	hp = nil

	keepAlive, err := rd.readResponse(req.keep, res)
	if err != nil {
		res.err = err
		return false
	}
	reusable = keepAlive && rd.r == rd.w // stray bytes after the body: don't trust the connection
	return false
}

// isRaceError is what a server closing an idle keep-alive connection looks like.
func isRaceError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || classifyError(err) == clsReset
}

// respReader parses one HTTP/1.x response from a connection through a borrowed buffer.
type respReader struct {
	src  io.Reader // the connection
	buf  []byte
	r, w int // unread bytes are buf[r:w]
}

// fill reads at least one more byte into the buffer.
func (rd *respReader) fill() error {
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
	if rd.w == len(rd.buf) {
		if rd.r == 0 {
			return fmt.Errorf("%w: header line longer than %d bytes", errMalformedResponse, len(rd.buf))
		}
		rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.r = 0
	}
	for {
		n, err := rd.src.Read(rd.buf[rd.w:])
		rd.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// line returns the next line without its CRLF (or bare LF). It is valid until the next
// call that reads.
func (rd *respReader) line() ([]byte, error) {
	for {
		if i := bytes.IndexByte(rd.buf[rd.r:rd.w], '\n'); i >= 0 {
			l := rd.buf[rd.r : rd.r+i]
			rd.r += i + 1
			return bytes.TrimSuffix(l, []byte("\r")), nil
		}
		if err := rd.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// maxBodyKeep bounds a kept body (playlists, counter answers).
var maxBodyKeep int64 = 4 << 20

// readResponse reads a status line, headers and body (RFC 9112), skipping interim 1xx
// answers. It reports whether the connection can carry another request.
func (rd *respReader) readResponse(keep bool, res *response) (keepAlive bool, err error) {
	for {
		status, err := rd.line()
		if err != nil {
			return false, err
		}
		// HTTP/1.x SP 3DIGIT [SP reason]
		if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.")) || status[8] != ' ' {
			return false, fmt.Errorf("%w: status line %q", errMalformedResponse, clip(status))
		}
		http10 := status[7] == '0'
		code := 0
		for _, c := range status[9:12] {
			if c < '0' || c > '9' {
				return false, fmt.Errorf("%w: status line %q", errMalformedResponse, clip(status))
			}
			code = code*10 + int(c-'0')
		}
		if code < 100 || (len(status) > 12 && status[12] != ' ') {
			return false, fmt.Errorf("%w: status line %q", errMalformedResponse, clip(status))
		}
		var (
			contentLength int64 = -1
			chunked       bool
			closeConn     = http10
		)
		for {
			h, err := rd.line()
			if err != nil {
				return false, err
			}
			if len(h) == 0 {
				break
			}
			name, value, ok := bytes.Cut(h, []byte(":"))
			if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
				return false, fmt.Errorf("%w: header line %q", errMalformedResponse, clip(h))
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				n, ok := parseInt(value)
				if !ok || (contentLength >= 0 && n != contentLength) {
					return false, fmt.Errorf("%w: Content-Length %q", errMalformedResponse, clip(value))
				}
				contentLength = n
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				if !bytes.EqualFold(lastToken(value), []byte("chunked")) {
					return false, fmt.Errorf("%w: Transfer-Encoding %q", errMalformedResponse, clip(value))
				}
				chunked = true
			case bytes.EqualFold(name, []byte("Connection")):
				if containsToken(value, "close") {
					closeConn = true
				} else if http10 && containsToken(value, "keep-alive") {
					closeConn = false
				}
			}
		}
		if code >= 100 && code < 200 {
			if code == 101 {
				return false, fmt.Errorf("%w: unexpected 101 Switching Protocols", errMalformedResponse)
			}
			continue // interim answer (100 Continue, 103 Early Hints); the real one follows
		}
		res.code = code
		if keep {
			res.bodyBuf = bodyPool.Get().(*[]byte)
			res.body = (*res.bodyBuf)[:0]
		}
		switch {
		case code == 204 || code == 304:
			return !closeConn, nil
		case chunked:
			return !closeConn, rd.chunked(keep, res)
		case contentLength >= 0:
			return !closeConn, rd.body(contentLength, keep, res)
		}
		return false, rd.untilEOF(keep, res)
	}
}

func (rd *respReader) body(n int64, keep bool, res *response) error {
	if keep && n > maxBodyKeep {
		return errBodyTooLarge
	}
	for n > 0 {
		if rd.r == rd.w {
			if err := rd.fill(); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := int64(rd.w - rd.r)
		if k > n {
			k = n
		}
		if keep {
			res.body = append(res.body, rd.buf[rd.r:rd.r+int(k)]...)
		}
		rd.r += int(k)
		res.bytes += k
		n -= k
	}
	return nil
}

func (rd *respReader) untilEOF(keep bool, res *response) error {
	for {
		if rd.r < rd.w {
			k := rd.w - rd.r
			if keep {
				if int64(len(res.body)+k) > maxBodyKeep {
					return errBodyTooLarge
				}
				res.body = append(res.body, rd.buf[rd.r:rd.w]...)
			}
			res.bytes += int64(k)
			rd.r = rd.w
		}
		if err := rd.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (rd *respReader) chunked(keep bool, res *response) error {
	for {
		l, err := rd.line()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i] // chunk extensions
		}
		size, ok := parseHex(bytes.TrimSpace(l))
		if !ok {
			return fmt.Errorf("%w: chunk size %q", errMalformedResponse, clip(l))
		}
		if size == 0 {
			for { // trailer section
				t, err := rd.line()
				if err != nil {
					return err
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		if keep && int64(len(res.body))+size > maxBodyKeep {
			return errBodyTooLarge
		}
		if err := rd.body(size, keep, res); err != nil {
			return err
		}
		if l, err := rd.line(); err != nil {
			return err
		} else if len(l) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errMalformedResponse)
		}
	}
}

func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// lastToken returns the last comma-separated token of a header value.
func lastToken(v []byte) []byte {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return bytes.TrimSpace(v)
}

// containsToken reports whether a comma-separated header value lists tok (any case).
func containsToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}
