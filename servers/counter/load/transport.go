package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// MaxConnsPerViewer bounds one viewer's simultaneous connections. A heartbeat whose
// viewer already has this many requests in flight waits for one of them, as a browser
// waits at its per-host connection limit. Without a bound an overloaded counter makes
// every late heartbeat dial a new connection, which loads it further; and 5,000 viewers
// must stay well inside the 20,000 open files a process may have here.
const MaxConnsPerViewer = 2

// sourceTransport is the http.RoundTripper behind the attack: one viewer per loopback
// source address, used round robin, each keeping its own keep-alive connection (a
// second one only while a previous heartbeat of the same viewer is still in flight).
// The counter therefore sees exactly len(sources) distinct addresses.
//
// Why not one http.Transport per source: http.Transport runs a read goroutine and a
// write goroutine per connection and hands every request between three goroutines.
// With 5,000 connections each carrying a few requests a second, nothing batches, and
// those hand-offs cost the generator more CPU than the counter spends answering, on a
// machine where both share two cores. Here a request is written and its response read
// in the calling goroutine, with net/http's own writer (Request.Write) and parser
// (http.ReadResponse), so the protocol handling is the standard library's.
//
// The heartbeat timeout is enforced here too, as a deadline that covers waiting for a
// connection, dialing, writing the request and reading the whole response, instead of
// by http.Client.Timeout, which starts a timer, a context and a goroutine per request.
type sourceTransport struct {
	next    atomic.Uint64
	sources []source
	timeout time.Duration // per request, everything included
}

// source is one viewer: its address, its idle connections and its connection slots.
type source struct {
	local *net.TCPAddr
	slots chan struct{} // holds a token per open connection, MaxConnsPerViewer at most
	freed chan struct{} // signalled when a connection comes back or closes, for waiters
	mu    sync.Mutex    // protects idle
	idle  []*clientConn // connections ready for the next request
}

type clientConn struct {
	src *source
	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
}

func newSourceTransport(srcs []netip.Addr, timeout time.Duration) *sourceTransport {
	t := &sourceTransport{sources: make([]source, len(srcs)), timeout: timeout}
	for i, a := range srcs {
		t.sources[i].local = &net.TCPAddr{IP: a.AsSlice()}
		t.sources[i].slots = make(chan struct{}, MaxConnsPerViewer)
		t.sources[i].freed = make(chan struct{}, 1)
	}
	return t
}

var errScheme = errors.New("source-address transport speaks plain http only")

// RoundTrip sends req from the next viewer's address. A request that fails on a reused
// connection before any response byte arrived (the server closed it while idle) is
// retried once on a fresh connection, as http.Transport does for idempotent requests.
func (t *sourceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close() // heartbeats have none; the RoundTripper contract says close it
		req.Body = nil
	}
	if req.URL.Scheme != "http" {
		return nil, errScheme
	}
	src := &t.sources[(t.next.Add(1)-1)%uint64(len(t.sources))]
	deadline := time.Now().Add(t.timeout)
	if d, ok := req.Context().Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for attempt := 0; ; attempt++ {
		cc, reused, err := src.get(req.Context(), hostPort(req.URL), deadline)
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(req, deadline)
		if err == nil {
			return resp, nil
		}
		cc.close()
		var ne net.Error
		if !reused || attempt > 0 || !errors.Is(err, errNothingRead) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, err
		}
	}
}

// errNothingRead marks a failure before the first response byte.
var errNothingRead = errors.New("connection closed before a response")

// roundTrip writes req and reads the response head; deadline also bounds reading the
// body, since it stays set on the connection until the next request.
func (cc *clientConn) roundTrip(req *http.Request, deadline time.Time) (*http.Response, error) {
	if err := cc.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if err := req.Write(cc.bw); err != nil {
		return nil, err
	}
	if err := cc.bw.Flush(); err != nil {
		return nil, fmt.Errorf("%w: %w", errNothingRead, err)
	}
	if _, err := cc.br.Peek(1); err != nil {
		return nil, fmt.Errorf("%w: %w", errNothingRead, err)
	}
	resp, err := http.ReadResponse(cc.br, req)
	if err != nil {
		return nil, err
	}
	resp.Body = &connBody{ReadCloser: resp.Body, cc: cc, reuse: !resp.Close}
	return resp, nil
}

// errNoSlot: every connection of the viewer stayed busy until the deadline.
var errNoSlot = errors.New("timeout waiting for one of the viewer's connections")

// get returns an idle connection of the source or, when it has a free slot, dials a new
// one from its address; otherwise it waits (until deadline) for a connection to come
// back or to close.
func (s *source) get(ctx context.Context, addr string, deadline time.Time) (cc *clientConn, reused bool, err error) {
	var timer *time.Timer // armed only when this request has to wait
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if n := len(s.idle); n > 0 {
			cc = s.idle[n-1]
			s.idle = s.idle[:n-1]
			more := n > 1
			s.mu.Unlock()
			if more && timer != nil {
				s.signal() // pass the word on to the next waiter
			}
			return cc, true, nil
		}
		s.mu.Unlock()
		select {
		case s.slots <- struct{}{}:
			d := net.Dialer{LocalAddr: s.local, Deadline: deadline, KeepAlive: 30 * time.Second}
			nc, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				<-s.slots
				s.signal()
				return nil, false, err
			}
			if timer != nil && len(s.slots) < cap(s.slots) {
				s.signal() // a slot is still free: pass the word on
			}
			return &clientConn{src: s, nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 1024)}, false, nil
		default:
		}
		// Every slot is taken: wait for a connection to come back or to close.
		if timer == nil {
			wait := time.Until(deadline)
			if wait <= 0 {
				return nil, false, errNoSlot
			}
			timer = time.NewTimer(wait)
		}
		select {
		case <-s.freed:
		case <-timer.C:
			return nil, false, errNoSlot
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// signal wakes one waiter, if any; a signal nobody takes stays for the next.
func (s *source) signal() {
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

func (s *source) put(cc *clientConn) {
	s.mu.Lock()
	s.idle = append(s.idle, cc)
	s.mu.Unlock()
	s.signal()
}

// close closes the connection and frees its slot.
func (cc *clientConn) close() {
	cc.nc.Close()
	<-cc.src.slots
	cc.src.signal()
}

// CloseIdleConnections closes every idle connection (http.Client calls it).
func (t *sourceTransport) CloseIdleConnections() {
	for i := range t.sources {
		s := &t.sources[i]
		s.mu.Lock()
		idle := s.idle
		s.idle = nil
		s.mu.Unlock()
		for _, cc := range idle {
			cc.close()
		}
	}
}

// connBody hands the connection back to its source once the body has been read to the
// end and closed; a body closed early, or a response that asked to close, closes it.
type connBody struct {
	io.ReadCloser
	cc    *clientConn
	reuse bool
	eof   bool
	done  bool
}

func (b *connBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *connBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.ReadCloser.Close()
	if b.eof && b.reuse && err == nil {
		b.cc.src.put(b.cc)
		return nil
	}
	b.cc.close()
	return err
}

// hostPort is the URL's host with the default port when it names none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}
