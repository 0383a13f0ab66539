package mirror

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/internal/serverkit"
)

// Defaults for Config. A zero field in Config takes its default; where a duration can
// also be switched off, a negative value switches it off (documented per field).
const (
	// DefaultListen is the address `stampede mirror` listens on (origin 8080, counter 8082).
	DefaultListen = "127.0.0.1:8081"
	// DefaultPlaylistTTL is how long a playlist stays fresh: the relay's nginx mirrors
	// cached playlists for 1 s.
	DefaultPlaylistTTL = time.Second
	// DefaultSegmentTTL is how long a segment stays fresh. Segments never change once
	// published, so this only bounds how long a removed one is still served.
	DefaultSegmentTTL = 60 * time.Second
	// DefaultNegativeTTL is how long a 404/410 is cached: not at all, because a segment
	// asked for a moment before it is published must not be pinned as missing.
	DefaultNegativeTTL = time.Duration(0)
	// DefaultStaleIfError is how long a request waits on a failing or slow upstream before
	// it gets the last good copy instead.
	DefaultStaleIfError = 2 * time.Second
	// DefaultCacheSize bounds the bytes the cache holds (bodies, keys and headers).
	DefaultCacheSize int64 = 256 << 20
	// DefaultMaxObjectSize is the largest object cached; larger ones stream through.
	DefaultMaxObjectSize int64 = 16 << 20
	// DefaultUpstreamConns is the size of the upstream keep-alive pool (idle and total).
	DefaultUpstreamConns = 64
	// DefaultUpstreamTimeout bounds dialing, waiting for response headers, and each
	// pause while reading an upstream body.
	DefaultUpstreamTimeout = 10 * time.Second
	// DefaultMaxConns is the client-connection limit: 0 means unlimited.
	DefaultMaxConns = 0
	// DefaultOverload is what happens to a connection beyond MaxConns.
	DefaultOverload = OverloadShed
	// DefaultIdleTimeout closes keep-alive connections idle this long (nginx's
	// keepalive_timeout default is 75 s).
	DefaultIdleTimeout = 75 * time.Second
	// DefaultReadHeaderTimeout is how long a client may take to send its request
	// headers: a slowloris holds a connection no longer than this.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds writing one response (hls.js gives a fragment 120 s).
	DefaultWriteTimeout = 2 * time.Minute
	// DefaultMaxHeaderBytes bounds a request's header block.
	DefaultMaxHeaderBytes = 16 << 10
)

// Overload policies for connections beyond Config.MaxConns.
const (
	// OverloadShed accepts the connection, answers 503 with Retry-After, and closes it.
	OverloadShed = "shed"
	// OverloadQueue stops accepting until a connection closes; new ones wait in the
	// kernel's listen backlog.
	OverloadQueue = "queue"
)

// Config configures a mirror. Only Upstream is required.
type Config struct {
	// Upstream is the origin every request is fetched from: http(s)://host[:port][/base].
	// Requests for /x are fetched from Upstream+/x; no other host is ever contacted.
	Upstream string

	// PlaylistTTL is the freshness of .m3u8 responses (default DefaultPlaylistTTL;
	// negative: never fresh, every request revalidates, still coalesced).
	PlaylistTTL time.Duration
	// SegmentTTL is the freshness of media segments (.ts, .m4s, .mp4, .aac, ...)
	// (default DefaultSegmentTTL; negative: never fresh).
	SegmentTTL time.Duration
	// NegativeTTL is the freshness of 404 and 410 answers (default 0: not cached).
	NegativeTTL time.Duration
	// StaleIfError: when the upstream fails, or has not answered within this long, a
	// request is served the last good copy (playlists too) and counted as stale
	// (default DefaultStaleIfError; negative: never serve stale).
	StaleIfError time.Duration
	// StaleWhileRevalidate: for this long after an object expires, requests get the
	// expired copy at once (counted as stale) while one background fetch refreshes it
	// (RFC 5861; nginx's proxy_cache_use_stale updating). Default 0: off, a request for
	// an expired object waits for the fresh one (a live playlist is then never older
	// than its TTL).
	StaleWhileRevalidate time.Duration
	// HonorCacheControl makes the upstream's Cache-Control (s-maxage, max-age,
	// no-store, no-cache, private) override the per-kind TTLs.
	HonorCacheControl bool

	// CacheSize bounds the cache in bytes (default DefaultCacheSize); least recently
	// used objects are evicted first.
	CacheSize int64
	// MaxObjectSize is the largest object kept (default: the smaller of
	// DefaultMaxObjectSize and CacheSize). Larger ones stream through uncached.
	MaxObjectSize int64

	// UpstreamConns is the upstream keep-alive pool size (default DefaultUpstreamConns).
	UpstreamConns int
	// UpstreamTimeout bounds dial, response headers and each body read pause
	// (default DefaultUpstreamTimeout).
	UpstreamTimeout time.Duration
	// Transport, when set, carries upstream requests instead of the built-in pool
	// (UpstreamConns and dial-EMFILE accounting then do not apply). Tests inject faults
	// with it.
	Transport http.RoundTripper

	// MaxConns caps open client connections in Serve (0: unlimited).
	MaxConns int
	// Overload is OverloadShed (default) or OverloadQueue.
	Overload string
	// IdleTimeout, ReadHeaderTimeout and WriteTimeout are the client-side timeouts used
	// by Serve (defaults above; negative: none).
	IdleTimeout, ReadHeaderTimeout, WriteTimeout time.Duration

	// DisableCoalescing makes every miss its own upstream request. Coalescing is on by
	// default; off exists to show the thundering herd it prevents.
	DisableCoalescing bool

	// Clock drives freshness and the stale-if-error wait (default: the wall clock).
	Clock clock.Clock
	// Labels are constant labels on every metric (run, tuning, ...).
	Labels serverkit.Labels
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
}

// Validate reports the first problem with c, naming the field; New runs it too.
func (c Config) Validate() error {
	_, err := resolve(c)
	return err
}

// resolved is a validated Config with every default applied.
type resolved struct {
	Config
	upstreamPrefix string        // scheme://host[/base], no trailing slash
	staleIfError   time.Duration // 0 when off
	playlistTTL    time.Duration // 0 when never fresh
	segmentTTL     time.Duration
	negativeTTL    time.Duration
}

// resolve validates cfg and fills in defaults; errors name the field.
func resolve(cfg Config) (resolved, error) {
	r := resolved{Config: cfg}
	prefix, err := upstreamPrefix(cfg.Upstream)
	if err != nil {
		return r, err
	}
	r.upstreamPrefix = prefix

	r.playlistTTL = orDefault(cfg.PlaylistTTL, DefaultPlaylistTTL)
	r.segmentTTL = orDefault(cfg.SegmentTTL, DefaultSegmentTTL)
	r.negativeTTL = orDefault(cfg.NegativeTTL, DefaultNegativeTTL)
	r.staleIfError = orDefault(cfg.StaleIfError, DefaultStaleIfError)

	if cfg.StaleWhileRevalidate < 0 {
		return r, fmt.Errorf("mirror: StaleWhileRevalidate %v: must not be negative", cfg.StaleWhileRevalidate)
	}
	if cfg.CacheSize < 0 {
		return r, fmt.Errorf("mirror: CacheSize %d: must not be negative", cfg.CacheSize)
	}
	if r.CacheSize == 0 {
		r.CacheSize = DefaultCacheSize
	}
	switch {
	case cfg.MaxObjectSize < 0:
		return r, fmt.Errorf("mirror: MaxObjectSize %d: must not be negative", cfg.MaxObjectSize)
	case cfg.MaxObjectSize == 0:
		r.MaxObjectSize = min(DefaultMaxObjectSize, r.CacheSize)
	case cfg.MaxObjectSize > r.CacheSize:
		return r, fmt.Errorf("mirror: MaxObjectSize %d is larger than CacheSize %d", cfg.MaxObjectSize, r.CacheSize)
	}
	if cfg.UpstreamConns < 0 {
		return r, fmt.Errorf("mirror: UpstreamConns %d: must not be negative", cfg.UpstreamConns)
	}
	if r.UpstreamConns == 0 {
		r.UpstreamConns = DefaultUpstreamConns
	}
	if cfg.UpstreamTimeout < 0 {
		return r, fmt.Errorf("mirror: UpstreamTimeout %v: must not be negative", cfg.UpstreamTimeout)
	}
	if r.UpstreamTimeout == 0 {
		r.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.MaxConns < 0 {
		return r, fmt.Errorf("mirror: MaxConns %d: must not be negative (0 is unlimited)", cfg.MaxConns)
	}
	switch cfg.Overload {
	case "":
		r.Overload = DefaultOverload
	case OverloadShed, OverloadQueue:
	default:
		return r, fmt.Errorf("mirror: Overload %q: want %q or %q", cfg.Overload, OverloadShed, OverloadQueue)
	}
	// For the client timeouts, 0 after resolving means none.
	r.IdleTimeout = orDefault(cfg.IdleTimeout, DefaultIdleTimeout)
	r.ReadHeaderTimeout = orDefault(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	r.WriteTimeout = orDefault(cfg.WriteTimeout, DefaultWriteTimeout)
	r.Clock = clock.Or(cfg.Clock)
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	return r, nil
}

// orDefault applies the Config convention for durations: zero takes the default, a
// negative value switches the feature off (returned as 0).
func orDefault(v, def time.Duration) time.Duration {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// upstreamPrefix checks Upstream and returns it without a trailing slash.
func upstreamPrefix(s string) (string, error) {
	if s == "" {
		return "", errors.New("mirror: Upstream is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("mirror: Upstream %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("mirror: Upstream %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("mirror: Upstream %q: no host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("mirror: Upstream %q: must not carry user info, a query or a fragment", s)
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/"), nil
}
