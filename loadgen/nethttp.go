package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// netHTTPClient fetches with net/http and measures time to first byte with httptrace,
// the way hey and vegeta do. It costs a Transport, a goroutine pair and two bufio
// buffers per connection, which is why it is not the default; it exists as the reference
// the viewer's own client is checked against (TestClientsAgree), as the benchmark peer,
// and for servers that only speak HTTP/2.
type netHTTPClient struct {
	sched     scheduler
	client    *http.Client
	transport *http.Transport
	userAgent string

	mu      sync.Mutex // protects cancels and closed
	cancels map[*context.CancelFunc]struct{}
	closed  bool
}

var _ fetcher = (*netHTTPClient)(nil)

func newNetHTTPClient(s scheduler, local net.Addr, tlsCfg *tls.Config, userAgent string, idle time.Duration) *netHTTPClient {
	d := &net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     tlsCfg,
		MaxConnsPerHost:     maxConnsPerHost,
		MaxIdleConnsPerHost: maxConnsPerHost,
		IdleConnTimeout:     idle,
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
	}
	return &netHTTPClient{
		sched:     s,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // like the own client: a redirect is an answer
			},
		},
		userAgent: userAgent,
		cancels:   map[*context.CancelFunc]struct{}{},
	}
}

// maxConnsPerHost is a browser's limit of parallel HTTP/1.1 connections to one host
// (Chrome and Firefox: 6).
const maxConnsPerHost = 6

func (c *netHTTPClient) get(req *request, res *response) {
	start := c.sched.Now()
	res.start = start
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		res.err = errStopped
		return
	}
	c.cancels[&cancel] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.cancels, &cancel)
		c.mu.Unlock()
		cancel()
		res.total = c.sched.Now().Sub(res.start)
	}()

	// The trace hooks run on transport goroutines and may outlive a failed Do: they
	// write only these, under mu, and res is filled from them once, at the end.
	var (
		mu        sync.Mutex // protects firstByte, sent, fired, done
		firstByte time.Time
		sent      bool
		fired     bool
		done      bool
	)
	defer func() {
		mu.Lock()
		done = true
		res.sent = sent
		mu.Unlock()
	}()
	abort := c.sched.AfterFunc(req.ttfbTimeout, func() {
		mu.Lock()
		fired = true
		mu.Unlock()
		cancel()
	})
	defer abort.Stop()
	trace := &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) {
			mu.Lock()
			sent = true
			mu.Unlock()
		},
		GotFirstResponseByte: func() {
			now := c.sched.Now()
			mu.Lock()
			defer mu.Unlock()
			if done {
				return
			}
			firstByte = now
			if !fired {
				abort.Reset(req.totalTimeout - now.Sub(start))
			}
		},
	}
	scheme := "http://"
	if req.ep.https {
		scheme = "https://"
	}
	hreq, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, scheme+req.ep.host+req.path, nil)
	if err != nil {
		res.err = fmt.Errorf("%w: %v", errMalformedResponse, err)
		return
	}
	hreq.Header.Set("User-Agent", c.userAgent)
	hresp, err := c.client.Do(hreq)
	timedOut := func() bool { mu.Lock(); defer mu.Unlock(); return fired }
	if err != nil {
		res.err = err
		if timedOut() {
			res.err = fmt.Errorf("%w: %v", errTimeout, err)
		}
		return
	}
	defer hresp.Body.Close()
	mu.Lock()
	res.ttfb = firstByte.Sub(res.start)
	mu.Unlock()
	res.code = hresp.StatusCode
	if req.keep {
		res.bodyBuf = bodyPool.Get().(*[]byte)
		res.body = (*res.bodyBuf)[:0]
	}
	bp := readPool.Get().(*[]byte)
	defer readPool.Put(bp)
	buf := *bp
	for {
		n, err := hresp.Body.Read(buf)
		if n > 0 {
			res.bytes += int64(n)
			if req.keep {
				if int64(len(res.body)+n) > maxBodyKeep {
					res.err = errBodyTooLarge
					return
				}
				res.body = append(res.body, buf[:n]...)
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			res.err = err
			if timedOut() {
				res.err = fmt.Errorf("%w: %v", errTimeout, err)
			}
			return
		}
	}
}

func (c *netHTTPClient) closeIdle(string) { c.transport.CloseIdleConnections() }

func (c *netHTTPClient) closeAll() {
	c.mu.Lock()
	c.closed = true
	for cancel := range c.cancels {
		(*cancel)()
	}
	c.mu.Unlock()
	c.transport.CloseIdleConnections()
}
