package containers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// viewerProxy sits on the host in front of the counter's published port and names
// each viewer in X-Forwarded-For, the way Cloudflare or an nginx in front of the
// story's counter did. Without it every viewer would reach the container from one
// address — the network's gateway, through docker-proxy — and the counter would count
// one viewer. It overwrites any X-Forwarded-For a client sent: it is the edge, and
// the counter trusts only it.
type viewerProxy struct {
	ln  net.Listener
	srv *http.Server
	rt  *http.Transport
}

func startViewerProxy(target string) (*viewerProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("containers: the counter's proxy: %w", err)
	}
	rt := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
			if ip, _, err := net.SplitHostPort(r.In.RemoteAddr); err == nil {
				r.Out.Header.Set("X-Forwarded-For", ip)
			}
		},
		Transport: rt,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The counter is down (killed, paused past the timeout): what a viewer
			// behind a real proxy sees.
			http.Error(w, "counter unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}
	p := &viewerProxy{ln: ln, rt: rt, srv: &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute, // above the 5 s heartbeat: a viewer keeps its connection
		ErrorLog:          nil,
	}}
	go p.srv.Serve(ln)
	return p, nil
}

// URL is where viewers send heartbeats.
func (p *viewerProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *viewerProxy) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = p.srv.Close()
	}
	p.rt.CloseIdleConnections()
	return err
}
