// Package faultproxy is a TCP proxy that puts distance and a thin pipe between two
// processes of a local topology: a round-trip delay that can be changed while traffic
// flows (a mirror's upstream slowing down mid-run, a mirror far from its viewers) and
// an optional bandwidth cap shared by several proxies (an origin's uplink that its
// viewers and its mirrors compete for). It knows nothing of HTTP, so it works the same
// in front of a stampede mirror, nginx or the origin.
//
// The delay model: a new connection reaches the target one round trip after the client
// connected (the TCP handshake to a far host), and every chunk of bytes then takes half
// a round trip in each direction. Order is kept; a chunk never overtakes an earlier one.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
)

// Defaults.
const (
	// DefaultDialTimeout bounds the dial to the target (after the handshake delay).
	DefaultDialTimeout = 5 * time.Second
	// DefaultChunkSize is the read size; one chunk is one unit of delay and shaping.
	DefaultChunkSize = 32 << 10
	// DefaultQueue is how many chunks may wait in one direction of one connection
	// before the proxy stops reading (backpressure reaches the sender through TCP).
	DefaultQueue = 64
)

// Config configures a Proxy.
type Config struct {
	// Listen is the address to accept on; default 127.0.0.1:0 (a free port).
	Listen string
	// Target is host:port to forward to (required).
	Target string
	// Delay is the initial round trip added; SetDelay changes it at run time.
	Delay time.Duration
	// Link, when set, carries every byte the target sends back: bytes from all proxies
	// sharing one Link queue for its capacity.
	Link *Link
	// PreserveSource dials the target from the client's own IP when that is a loopback
	// address, so a server behind the proxy still sees one address per viewer (the
	// counter's per-IP map, per-IP limits).
	PreserveSource bool
	// DialTimeout bounds the dial to the target; default DefaultDialTimeout.
	DialTimeout time.Duration
	// Clock times delays; default the wall clock.
	Clock clock.Clock
	// Logger receives connection errors at debug level; default slog.Default().
	Logger *slog.Logger
}

// Proxy forwards TCP connections to a target with an adjustable delay.
type Proxy struct {
	cfg   Config
	clk   clock.Clock
	log   *slog.Logger
	ln    net.Listener
	delay atomic.Int64 // round trip in nanoseconds

	accepted atomic.Int64
	failed   atomic.Int64 // dials to the target that failed
	up, down atomic.Int64 // bytes forwarded client→target, target→client

	mu     sync.Mutex // protects conns and closed
	conns  map[net.Conn]struct{}
	closed bool

	wg   sync.WaitGroup // connection handlers and the accept loop
	done chan struct{}  // closed by Close
}

// Stats are a proxy's counters.
type Stats struct {
	Accepted   int64 // client connections accepted
	DialFailed int64 // connections whose dial to the target failed
	BytesUp    int64 // client → target
	BytesDown  int64 // target → client
}

// New listens and starts forwarding; Close stops it.
func New(cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("faultproxy: Target is required")
	}
	if cfg.Delay < 0 {
		return nil, fmt.Errorf("faultproxy: Delay %s is negative", cfg.Delay)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", cfg.Listen, err)
	}
	p := &Proxy{
		cfg:   cfg,
		clk:   clock.Or(cfg.Clock),
		log:   log.With("proxy", ln.Addr().String(), "target", cfg.Target),
		ln:    ln,
		conns: map[net.Conn]struct{}{},
		done:  make(chan struct{}),
	}
	p.delay.Store(int64(cfg.Delay))
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.cfg.Target }

// SetDelay changes the round trip added to bytes read from now on. Safe to call while
// traffic flows; it implements the scenario's delay fault.
func (p *Proxy) SetDelay(d time.Duration) {
	if d < 0 {
		d = 0
	}
	p.delay.Store(int64(d))
}

// Delay is the current round trip added.
func (p *Proxy) Delay() time.Duration { return time.Duration(p.delay.Load()) }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), DialFailed: p.failed.Load(), BytesUp: p.up.Load(), BytesDown: p.down.Load()}
}

// Close stops accepting, closes every open connection and waits for the handlers.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	err := p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// track registers c so Close can close it; it reports false when the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// EMFILE and friends: back off briefly instead of spinning.
				t := p.clk.NewTimer(10 * time.Millisecond)
				select {
				case <-t.C():
				case <-p.done:
					t.Stop()
					return
				}
				continue
			}
			p.log.Debug("accept failed", "err", err)
			return
		}
		if !p.track(c) {
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.handle(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// chunk is bytes read at a time, waiting for their delivery time.
type chunk struct {
	b   []byte
	due time.Time
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)

	// The handshake to a far target costs one round trip before anything flows.
	connected := p.clk.Now()
	if rtt := p.Delay(); rtt > 0 {
		if !p.sleepUntil(connected.Add(rtt)) {
			return
		}
	}
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	if p.cfg.PreserveSource {
		if ta, ok := client.RemoteAddr().(*net.TCPAddr); ok && ta.IP.IsLoopback() {
			d.LocalAddr = &net.TCPAddr{IP: ta.IP}
		}
	}
	target, err := d.Dial("tcp", p.cfg.Target)
	if err != nil {
		p.failed.Add(1)
		p.log.Debug("dial target failed", "err", err)
		return
	}
	if !p.track(target) {
		return
	}
	defer p.untrack(target)
	ready := p.clk.Now()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.pipe(client, target, ready, nil, &p.up)
	}()
	go func() {
		defer wg.Done()
		p.pipe(target, client, ready, p.cfg.Link, &p.down)
	}()
	wg.Wait()
}

// pipe copies src to dst, delivering each chunk half a round trip (as set when it was
// read) after it was read — or, through a Link, after the link has carried it. When src
// ends, dst's write side is closed after the queued chunks; on an error both close.
func (p *Proxy) pipe(src, dst net.Conn, ready time.Time, link *Link, count *atomic.Int64) {
	q := make(chan chunk, DefaultQueue)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for c := range q {
			if !p.sleepUntil(c.due) {
				break
			}
			if _, err := dst.Write(c.b); err != nil {
				break
			}
			count.Add(int64(len(c.b)))
		}
		// Drain so the reader never blocks on a full queue after a write error.
		for range q {
		}
	}()

	buf := make([]byte, DefaultChunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			now := p.clk.Now()
			sent := now
			if link != nil {
				sent = link.reserve(now, n)
			}
			if sent.Before(ready) {
				sent = ready
			}
			c := chunk{b: append([]byte(nil), buf[:n]...), due: sent.Add(p.Delay() / 2)}
			select {
			case q <- c:
			case <-writerDone:
				err = io.ErrClosedPipe
			case <-p.done:
				err = io.ErrClosedPipe
			}
		}
		if err != nil {
			close(q)
			<-writerDone
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
					return
				}
			}
			src.Close()
			dst.Close()
			return
		}
	}
}

// sleepUntil waits for the clock to reach t; it reports false if the proxy closed first.
func (p *Proxy) sleepUntil(t time.Time) bool {
	wait := t.Sub(p.clk.Now())
	if wait <= 0 {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	tm := p.clk.NewTimer(wait)
	select {
	case <-tm.C():
		return true
	case <-p.done:
		tm.Stop()
		return false
	}
}

// Link is a shared link of fixed capacity: chunks from every proxy using it are sent
// one after another, each taking len×8/capacity, in the order they were read. Bytes
// waiting for the link are what a saturated uplink looks like to the receiver: the
// same data, later.
type Link struct {
	bitsPerSecond float64
	mu            sync.Mutex // protects free
	free          time.Time  // when the link finishes sending what it holds
}

// NewLink returns a link carrying bitsPerSecond (e.g. 200e6 for 200 Mbit/s).
func NewLink(bitsPerSecond float64) (*Link, error) {
	if bitsPerSecond <= 0 {
		return nil, fmt.Errorf("faultproxy: link capacity %v bits/s must be positive", bitsPerSecond)
	}
	return &Link{bitsPerSecond: bitsPerSecond}, nil
}

// reserve queues n bytes read at now and returns when their last bit leaves the link.
func (l *Link) reserve(now time.Time, n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := l.free
	if start.Before(now) {
		start = now
	}
	l.free = start.Add(time.Duration(float64(n*8) / l.bitsPerSecond * float64(time.Second)))
	return l.free
}
