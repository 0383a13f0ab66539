package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// endpoint is a server a viewer talks to: a mirror, the origin, or the counter. It is
// parsed once per swarm and shared read-only by every viewer.
type endpoint struct {
	https  bool
	host   string // the Host header: host[:port] as the URL gave it
	addr   string // the dial address, host:port with the scheme's default port filled in
	prefix string // the base URL's path without a trailing slash ("" for the root)
	name   string // the metric label: host:port
}

// parseEndpoint parses a base or full URL (http or https; no user info, no fragment).
// It returns the endpoint and the URL's path (with query), which callers use when the
// URL names a resource rather than a base.
func parseEndpoint(raw string) (*endpoint, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", fmt.Errorf("%q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, "", fmt.Errorf("%q: no host", raw)
	}
	if u.User != nil {
		return nil, "", fmt.Errorf("%q: user info is not supported", raw)
	}
	ep := &endpoint{https: u.Scheme == "https", host: u.Host}
	port := u.Port()
	if port == "" {
		port = "80"
		if ep.https {
			port = "443"
		}
	}
	ep.addr = net.JoinHostPort(u.Hostname(), port)
	ep.name = ep.addr
	p := u.EscapedPath()
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	ep.prefix = strings.TrimSuffix(u.EscapedPath(), "/")
	return ep, p, nil
}

// isLoopback reports whether every address the endpoint's host names is on loopback
// (127.0.0.0/8 or ::1), resolving a name if it must.
func (e *endpoint) isLoopback(ctx context.Context) bool {
	host, _, err := net.SplitHostPort(e.addr)
	if err != nil {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return false
		}
	}
	return true
}

// resolveRef resolves a URI found in a playlist against the playlist's path (RFC 3986
// §5.2, as RFC 8216 §4.1 asks). The common case, a plain relative name like "123.ts", is
// a string join; anything else goes through net/url. An absolute URL on another host
// returns that host as ep; otherwise ep is nil (the viewer's current mirror), which keeps
// failover working for the usual relative URIs.
func resolveRef(base string, ref []byte) (path string, ep *endpoint, err error) {
	for _, c := range ref {
		if c <= ' ' || c == 0x7f {
			return "", nil, fmt.Errorf("%w: URI %q contains a control character or space", errPlaylist, clip(ref))
		}
	}
	simple := len(ref) > 0 && ref[0] != '/' && ref[0] != '.'
	for _, c := range ref {
		if c == ':' || c == '/' || c == '#' {
			simple = false
			break
		}
	}
	if simple {
		dir := base
		if q := strings.IndexByte(dir, '?'); q >= 0 {
			dir = dir[:q]
		}
		dir = dir[:strings.LastIndexByte(dir, '/')+1]
		return dir + string(ref), nil, nil
	}
	bu, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("%w: base %q: %v", errPlaylist, base, err)
	}
	ru, err := url.Parse(string(ref))
	if err != nil {
		return "", nil, fmt.Errorf("%w: URI %q: %v", errPlaylist, clip(ref), err)
	}
	abs := bu.ResolveReference(ru)
	if ru.IsAbs() || ru.Host != "" {
		if abs.Scheme == "" {
			abs.Scheme = "http"
		}
		e, p, err := parseEndpoint(abs.String())
		if err != nil {
			return "", nil, fmt.Errorf("%w: URI %q: %v", errPlaylist, clip(ref), err)
		}
		return p, e, nil
	}
	p := abs.EscapedPath()
	if abs.RawQuery != "" {
		p += "?" + abs.RawQuery
	}
	return p, nil, nil
}
