package mirror

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stampede-live/stampede/internal/serverkit"
)

// Serve serves the mirror on ln until ctx ends or Close is called, then shuts down
// gracefully (idle connections at once, busy ones after their answer or
// serverkit.DefaultShutdownGrace). It owns ln: it enforces MaxConns (shedding with 503 +
// Retry-After, or queueing), applies the client timeouts, and survives running out of
// file descriptors on accept (see acceptor). Connections are served by httpConn.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close ends Serve too
	defer stop()
	a := newAcceptor(ln, s)
	defer a.closeReserve()
	cs := newConnServer(s)
	a.freeIdle = cs.closeIdle
	errc := make(chan error, 1)
	go func() { errc <- cs.acceptLoop(a) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		a.Close()
		err = <-errc
	}
	cs.shutdown(serverkit.DefaultShutdownGrace)
	return err
}

// acceptLoop hands each accepted connection to its own goroutine. It returns nil once
// the listener is closed; other accept errors are retried with a backoff (EMFILE never
// reaches here: the acceptor deals with it).
func (cs *connServer) acceptLoop(a *acceptor) error {
	backoff := 5 * time.Millisecond
	for {
		c, err := a.Accept()
		if err != nil {
			select {
			case <-a.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			cs.s.cfg.Logger.Warn("accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-a.done:
				return nil
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		go cs.serve(c)
	}
}

// acceptor wraps the listener. It counts open connections, enforces MaxConns, and on
// EMFILE keeps the server alive: it logs once per second, counts the event, answers the
// waiting client 503 using a reserved descriptor, and backs off until descriptors free
// up — then accepting resumes by itself.
type acceptor struct {
	net.Listener
	s     *Server
	slots chan struct{} // one token per open connection when MaxConns > 0
	queue bool          // wait for a slot instead of shedding
	done  chan struct{} // closed by Close
	once  sync.Once

	mu      sync.Mutex // protects reserve
	reserve *os.File   // a spare descriptor, given up to answer 503 when none is left

	shedding atomic.Int32 // 503 writers in flight (bounded so a storm cannot pile them up)

	// freeIdle closes one idle keep-alive connection, reporting whether there was one:
	// the last resort to win back a descriptor when even the reserve is gone.
	freeIdle func() bool
}

const (
	maxShedWriters = 128
	shedTimeout    = time.Second
	// emfileShedTimeout is shorter: that 503 is written on the accept loop itself.
	emfileShedTimeout = 250 * time.Millisecond
	maxBackoff        = 500 * time.Millisecond
)

func newAcceptor(ln net.Listener, s *Server) *acceptor {
	a := &acceptor{Listener: ln, s: s, done: make(chan struct{}), queue: s.cfg.Overload == OverloadQueue}
	if s.cfg.MaxConns > 0 {
		a.slots = make(chan struct{}, s.cfg.MaxConns)
	}
	a.reopenReserve()
	return a
}

func (a *acceptor) Close() error {
	a.once.Do(func() { close(a.done) })
	return a.Listener.Close()
}

func (a *acceptor) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		if a.slots != nil && a.queue {
			select {
			case a.slots <- struct{}{}:
			default:
				a.s.m.queued.Set(1)
				select {
				case a.slots <- struct{}{}:
					a.s.m.queued.Set(0)
				case <-a.done:
					a.s.m.queued.Set(0)
					return nil, net.ErrClosed
				}
			}
		}
		c, err := a.Listener.Accept()
		if err != nil {
			if a.slots != nil && a.queue {
				<-a.slots
			}
			if !isEMFILE(err) {
				return nil, err
			}
			a.s.m.emfile.WithLabelValues(opAccept).Inc()
			a.s.emfileLog.warn(a.s.cfg.Logger, "out of file descriptors accepting connections; shedding with 503 until some close", "err", err)
			pending := a.pending()
			a.s.cfg.Logger.Debug("accept: EMFILE", "pending", pending, "reserve", a.hasReserve(), "backoff", backoff)
			if pending {
				c, progressed := a.acceptWithReserve()
				if c != nil {
					return c, nil
				}
				if progressed { // a waiting client got its 503: try the next one straight away
					backoff = 5 * time.Millisecond
					continue
				}
				// The reserve is gone: between closing a shed connection and reopening
				// it, another open (an upstream dial) took the descriptor. Close an idle
				// keep-alive connection to win one back, so waiting clients are answered
				// instead of waiting until someone else lets go.
				if a.freeIdle != nil && a.freeIdle() {
					a.s.m.shed.WithLabelValues(shedIdle).Inc()
					a.reopenReserve()
					continue
				}
			}
			select {
			case <-time.After(backoff):
			case <-a.done:
				return nil, net.ErrClosed
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = 5 * time.Millisecond
		if a.slots != nil && !a.queue {
			select {
			case a.slots <- struct{}{}:
			default:
				a.shed(c, shedMaxConns)
				continue
			}
		}
		return a.track(c), nil
	}
}

// track counts c as open until it closes.
func (a *acceptor) track(c net.Conn) net.Conn {
	a.s.m.clientConns.Inc()
	tc := &trackedConn{Conn: c}
	tc.release = func() {
		a.s.m.clientConns.Dec()
		if a.slots != nil {
			<-a.slots
		}
	}
	return tc
}

// acceptWithReserve gives up the reserved descriptor to accept one waiting connection.
// If a descriptor has freed up meanwhile (the reserve can be reopened) the connection is
// served normally; otherwise it is answered 503 and closed right here (nothing else can
// be accepted anyway), and the reserve is taken back. It returns the connection to
// serve, if any, and whether a waiting client was dealt with.
func (a *acceptor) acceptWithReserve() (net.Conn, bool) {
	a.mu.Lock()
	r := a.reserve
	a.reserve = nil
	a.mu.Unlock()
	if r == nil {
		return nil, false
	}
	r.Close()
	// A client is pending, so Accept should not wait; should it have gone meanwhile,
	// the deadline keeps the accept loop from blocking without its reserve.
	if dl, ok := a.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		_ = dl.SetDeadline(time.Now().Add(100 * time.Millisecond))
		defer dl.SetDeadline(time.Time{})
	}
	c, err := a.Listener.Accept()
	if err != nil {
		a.reopenReserve()
		return nil, false
	}
	if a.reopenReserve() {
		if a.slots != nil {
			select {
			case a.slots <- struct{}{}:
			default:
				a.shed(c, shedMaxConns)
				return nil, true
			}
		}
		return a.track(c), true
	}
	a.s.m.shed.WithLabelValues(shedEMFILE).Inc()
	start := time.Now()
	respond503(c, emfileShedTimeout)
	ok := a.reopenReserve()
	a.s.cfg.Logger.Debug("accept: shed with the reserve", "took", time.Since(start), "reserve_back", ok)
	return nil, true
}

// pending reports whether a client is waiting in the listen backlog, without accepting
// it: the reserve is given up only for a client that is there, never while waiting.
func (a *acceptor) pending() bool {
	sc, ok := a.Listener.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	ready := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		ready = err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
	})
	return ready
}

func (a *acceptor) hasReserve() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reserve != nil
}

// reopenReserve takes a spare descriptor if there is none; it reports whether one is held.
func (a *acceptor) reopenReserve() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reserve != nil {
		return true
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		return false
	}
	a.reserve = f
	return true
}

func (a *acceptor) closeReserve() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reserve != nil {
		a.reserve.Close()
		a.reserve = nil
	}
}

// shed counts c as shed and answers it 503 in the background.
func (a *acceptor) shed(c net.Conn, reason string) {
	a.s.m.shed.WithLabelValues(reason).Inc()
	if a.shedding.Add(1) > maxShedWriters {
		a.shedding.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer a.shedding.Add(-1)
		respond503(c, shedTimeout)
	}()
}

var shedResponse = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nRetry-After: 1\r\n" +
	"Connection: close\r\nContent-Length: 34\r\n\r\nmirror: overloaded, retry shortly\n")

// respond503 reads the request head (so closing does not reset the connection and lose
// the answer), writes a 503 with Retry-After, and closes.
func respond503(c net.Conn, timeout time.Duration) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var buf [4096]byte
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil || bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			break
		}
	}
	_, _ = c.Write(shedResponse)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// trackedConn runs release once when closed.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite lets net/http half-close the connection as it does a *net.TCPConn.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
