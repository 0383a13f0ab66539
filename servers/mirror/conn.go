package mirror

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Serve does not use net/http's server loop: for a cache hit that loop costs more than
// the hit itself (a background-read goroutine per request, an extra read syscall and
// its wake-up, a response writer chain). httpConn is a small HTTP/1.1 loop for a server
// that only answers GET and HEAD: requests are parsed by net/http's own http.ReadRequest
// (the part that must be robust against hostile input), answers are written straight
// into one buffer per connection, large bodies go out with their headers in one writev,
// and pipelined answers are flushed together. Handler() stays a plain http.Handler for
// use inside any net/http server.

// connServer owns the connections of one Serve call.
type connServer struct {
	s *Server

	mu      sync.Mutex // protects conns and closing
	conns   map[*httpConn]struct{}
	closing bool
	wg      sync.WaitGroup // one per live connection
}

// httpConn is one client connection.
type httpConn struct {
	cs     *connServer
	c      net.Conn // closing it releases the connection's slot
	raw    net.Conn // the socket itself, for reads and (writev-capable) writes
	pre    prefixReader
	lr     limitReader
	br     *bufio.Reader // nil while idle
	w      respWriter
	remote string
	ctx    context.Context
	cancel context.CancelFunc
	idle   atomic.Bool // waiting for the next request: shutdown may close it at once
	// linger: unread input may be left (a refused body, a bad head); drain it briefly
	// before closing so the answer is not lost to a TCP reset.
	linger bool
}

// prefixReader yields the bytes read while the connection was idle, then reads the
// socket. An idle keep-alive connection (a viewer between two playlist polls) holds only
// this small array: the 4 KiB read and write buffers go back to their pools.
type prefixReader struct {
	conn   net.Conn
	buf    [idleReadSize]byte
	off, n int
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if p.off < p.n {
		n := copy(b, p.buf[p.off:p.n])
		p.off += n
		return n, nil
	}
	return p.conn.Read(b)
}

// limitReader bounds how much a request head may read, like net/http's MaxHeaderBytes.
type limitReader struct {
	r io.Reader
	n int64 // bytes left; reset for every request
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

var (
	errHeadTooLarge = errors.New("request head too large")
	aLongTimeAgo    = time.Unix(1, 0)
)

const (
	connBufSize = 4 << 10
	// idleReadSize is the first read of a request: most requests fit, so a keep-alive
	// request costs one read syscall.
	idleReadSize = 1 << 10
	noLimit      = 1 << 62
)

var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, connBufSize) }}

func newConnServer(s *Server) *connServer {
	return &connServer{s: s, conns: map[*httpConn]struct{}{}}
}

// serve runs c until it closes or the server shuts down.
func (cs *connServer) serve(c net.Conn) {
	hc := &httpConn{cs: cs, c: c, raw: c}
	if tc, ok := c.(*trackedConn); ok {
		hc.raw = tc.Conn
	}
	cs.mu.Lock()
	if cs.closing {
		cs.mu.Unlock()
		c.Close()
		return
	}
	cs.conns[hc] = struct{}{}
	cs.wg.Add(1)
	cs.mu.Unlock()
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			cs.s.cfg.Logger.Error("panic serving a connection", "remote", hc.remote, "panic", p)
		}
		hc.close()
		cs.mu.Lock()
		delete(cs.conns, hc)
		cs.mu.Unlock()
		cs.wg.Done()
	}()
	hc.loop()
}

func (hc *httpConn) close() {
	if hc.cancel != nil {
		hc.cancel()
	}
	hc.w.flush() // answers held back for pipelined requests
	if hc.linger {
		lingerClose(hc.raw)
	}
	hc.c.Close()
	hc.releaseBuffers()
}

// acquireBuffers takes read and write buffers for a request.
func (hc *httpConn) acquireBuffers() {
	if hc.br == nil {
		hc.br = brPool.Get().(*bufio.Reader)
		hc.br.Reset(&hc.lr)
	}
	if hc.w.out == nil {
		hc.w.out = (*outPool.Get().(*[]byte))[:0]
	}
}

// releaseBuffers returns them while the connection waits; only a drained reader and a
// flushed writer are given back.
func (hc *httpConn) releaseBuffers() {
	if hc.br != nil && hc.br.Buffered() == 0 {
		hc.br.Reset(nil)
		brPool.Put(hc.br)
		hc.br = nil
	}
	if len(hc.w.out) == 0 {
		hc.w.release()
	}
}

// loop reads requests and answers them in order until the connection should close.
func (hc *httpConn) loop() {
	cfg := &hc.cs.s.cfg
	hc.ctx, hc.cancel = context.WithCancel(hc.cs.s.ctx)
	hc.remote = hc.c.RemoteAddr().String()
	hc.pre.conn = hc.raw
	hc.lr.r = &hc.pre
	hc.w.init(hc)
	first := true
	for {
		hc.lr.n = DefaultMaxHeaderBytes + connBufSize
		if hc.br == nil || hc.br.Buffered() == 0 {
			// Nothing pipelined: wait for the next request holding no buffers.
			// ReadHeaderTimeout for the first request (a slowloris gets no longer),
			// IdleTimeout between keep-alive requests.
			hc.releaseBuffers()
			wait := cfg.ReadHeaderTimeout
			if !first {
				wait = cfg.IdleTimeout
			}
			hc.setReadDeadline(wait)
			hc.idle.Store(true)
			if hc.cs.isClosing() {
				return
			}
			n, _ := hc.raw.Read(hc.pre.buf[:])
			if n == 0 {
				return
			}
			hc.pre.off, hc.pre.n = 0, n
			hc.idle.Store(false)
			hc.acquireBuffers()
		}
		if !first {
			hc.setReadDeadline(cfg.ReadHeaderTimeout)
		}
		req, err := http.ReadRequest(hc.br)
		if err != nil {
			hc.rejectHead(err)
			return
		}
		first = false
		hc.lr.n = noLimit
		if cfg.WriteTimeout > 0 {
			_ = hc.raw.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		}
		req.RemoteAddr = hc.remote
		req = req.WithContext(hc.ctx)
		// Only GET and HEAD are served; a request with a body is answered (405) and the
		// connection closed rather than its body read.
		hasBody := req.ContentLength != 0 || len(req.TransferEncoding) > 0
		keep := !req.Close && req.ProtoAtLeast(1, 1) && !hasBody
		hc.linger = hasBody
		hc.w.reset(req, keep)
		hc.cs.s.ServeHTTP(&hc.w, req)
		if !hc.w.finish() {
			return
		}
	}
}

func (hc *httpConn) setReadDeadline(d time.Duration) {
	if d > 0 {
		_ = hc.raw.SetReadDeadline(time.Now().Add(d))
	} else {
		_ = hc.raw.SetReadDeadline(time.Time{})
	}
}

// rejectHead answers a request head that could not be read, where an answer makes sense.
func (hc *httpConn) rejectHead(err error) {
	var ne net.Error
	hc.w.flush()
	switch {
	case errors.Is(err, errHeadTooLarge):
		hc.writeRaw("431 Request Header Fields Too Large", "request head too large")
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne):
		// The client left or was too slow: nothing to say.
	default:
		hc.writeRaw("400 Bad Request", "malformed request")
	}
}

func (hc *httpConn) writeRaw(status, msg string) {
	hc.linger = true
	_ = hc.raw.SetWriteDeadline(time.Now().Add(time.Second))
	body := msg + "\n"
	b := appendDate([]byte("HTTP/1.1 " + status + "\r\n"))
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body...)
	_, _ = hc.raw.Write(b)
}

// lingerClose half-closes c and reads what the client still sends, for a moment, so
// that closing with unread input does not reset the connection before the client has
// read the answer.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, c, 256<<10)
}

func (cs *connServer) isClosing() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.closing
}

// closeIdle closes one connection that waits for its next request, freeing its
// descriptor at once, and reports whether there was one.
func (cs *connServer) closeIdle() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for hc := range cs.conns {
		if hc.idle.CompareAndSwap(true, false) {
			hc.c.Close() // its goroutine's Read fails and it finishes closing
			return true
		}
	}
	return false
}

// shutdown closes idle connections at once, lets busy ones finish their answer for up
// to grace, then closes whatever is left.
func (cs *connServer) shutdown(grace time.Duration) {
	cs.mu.Lock()
	cs.closing = true
	for hc := range cs.conns {
		if hc.idle.Load() {
			_ = hc.raw.SetReadDeadline(aLongTimeAgo) // wakes its Peek
		}
	}
	cs.mu.Unlock()
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	cs.mu.Lock()
	for hc := range cs.conns {
		hc.cancel()
		hc.c.Close()
	}
	cs.mu.Unlock()
	<-done
}

// respWriter is the http.ResponseWriter of httpConn: headers and small bodies collect in
// one buffer; a body too large for it goes out together with the buffer in one writev.
type respWriter struct {
	hc          *httpConn
	header      http.Header
	req         *http.Request
	keep        bool // keep the connection open after this answer
	wroteHeader bool
	noBody      bool // HEAD, 1xx, 204, 304
	chunked     bool
	clen        int64 // declared Content-Length, -1 if none
	written     int64
	out         []byte // unsent bytes
	err         error  // a write failed: the connection is done
}

var _ http.ResponseWriter = (*respWriter)(nil)
var _ http.Flusher = (*respWriter)(nil)

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, connBufSize); return &b }}

func (w *respWriter) init(hc *httpConn) {
	w.hc = hc
	w.header = make(http.Header, 8)
}

func (w *respWriter) release() {
	if w.out != nil {
		b := w.out[:0]
		outPool.Put(&b)
		w.out = nil
	}
}

func (w *respWriter) reset(req *http.Request, keep bool) {
	clear(w.header)
	w.req, w.keep = req, keep
	w.wroteHeader, w.noBody, w.chunked = false, false, false
	w.clen, w.written = -1, 0
}

func (w *respWriter) Header() http.Header { return w.header }

func (w *respWriter) WriteHeader(code int) {
	if w.wroteHeader || w.err != nil {
		return
	}
	if code < 200 || code > 999 {
		return // informational answers are never sent by the mirror
	}
	w.wroteHeader = true
	if v := w.header["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			w.clen = n
		}
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if !w.noBody && w.clen < 0 {
		w.chunked = true
	}
	b := append(w.out, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	b = appendDate(b)
	for k, vs := range w.header {
		if k == "Transfer-Encoding" || k == "Connection" || k == "Date" {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendHeaderValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if !w.keep {
		b = append(b, "Connection: close\r\n"...)
	}
	w.out = append(b, "\r\n"...)
}

// appendHeaderValue writes v with any CR or LF turned into a space: a header value can
// never split the response.
func appendHeaderValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		return len(p), nil
	}
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.chunked {
		if len(p) == 0 {
			return 0, nil
		}
		hdr := strconv.AppendInt(make([]byte, 0, 20), int64(len(p)), 16)
		w.write(append(hdr, "\r\n"...))
		w.write(p)
		w.write([]byte("\r\n"))
	} else {
		w.write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// write queues p, sending the queue first (in one writev) when p does not fit.
func (w *respWriter) write(p []byte) {
	if w.err != nil {
		return
	}
	if len(w.out)+len(p) <= cap(w.out) {
		w.out = append(w.out, p...)
		return
	}
	var err error
	if len(w.out) == 0 {
		_, err = w.hc.raw.Write(p)
	} else {
		bufs := net.Buffers{w.out, p}
		_, err = bufs.WriteTo(w.hc.raw)
	}
	w.out = w.out[:0]
	w.err = err
}

// Flush sends what is queued: a waiter streaming a segment gets each piece at once.
func (w *respWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.flush()
}

func (w *respWriter) flush() {
	if w.err != nil || len(w.out) == 0 {
		return
	}
	_, w.err = w.hc.raw.Write(w.out)
	w.out = w.out[:0]
}

// finish completes the answer and reports whether the connection may carry another.
func (w *respWriter) finish() bool {
	if !w.wroteHeader {
		if _, ok := w.header["Content-Length"]; !ok {
			w.header["Content-Length"] = []string{"0"}
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.write([]byte("0\r\n\r\n"))
	}
	if w.clen >= 0 && w.written < w.clen && !w.noBody {
		w.keep = false // the body came up short: only closing tells the client
	}
	// Pipelined requests already read get their answers in the same write.
	if !w.keep || w.hc.br.Buffered() == 0 {
		w.flush()
	}
	return w.keep && w.err == nil
}

// The Date header, formatted once per second.
type dateLine struct {
	sec  int64
	line []byte
}

var dateCache atomic.Pointer[dateLine]

func appendDate(b []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.sec != now.Unix() {
		line := now.UTC().AppendFormat([]byte("Date: "), http.TimeFormat)
		d = &dateLine{sec: now.Unix(), line: append(line, "\r\n"...)}
		dateCache.Store(d)
	}
	return append(b, d.line...)
}
