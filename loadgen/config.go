package loadgen

import (
	"crypto/tls"
	"fmt"
	"time"
)

// Player defaults. Each names its source: hls.js (src/config.ts and docs/API.md of
// hls.js v1.5, the player most self-hosted streams embed), RFC 8216 (HLS), or the story
// stampede grows out of.
const (
	// DefaultLiveSyncDurationCount: start this many target durations behind the live
	// edge. hls.js liveSyncDurationCount = 3; RFC 8216 §6.3.3: a client SHOULD NOT start
	// less than three target durations from the end of the playlist.
	DefaultLiveSyncDurationCount = 3
	// DefaultMaxBufferLength: fetch ahead until this much media is buffered.
	// hls.js maxBufferLength = 30 s.
	DefaultMaxBufferLength = 30 * time.Second
	// DefaultBandwidthEstimate in bits/s, used until the first segment is measured.
	// hls.js abrEwmaDefaultEstimate = 5e5 (500 kbps).
	DefaultBandwidthEstimate = 500_000
	// DefaultABRFastHalfLife, DefaultABRSlowHalfLife: half-lives (seconds of download
	// time) of the two bandwidth EWMAs. hls.js abrEwmaFastLive = 3, abrEwmaSlowLive = 9.
	DefaultABRFastHalfLife = 3.0
	DefaultABRSlowHalfLife = 9.0
	// DefaultBandwidthFactor: a rendition at or below the current one is chosen while its
	// bitrate is under estimate × 0.95. hls.js abrBandWidthFactor = 0.95.
	DefaultBandwidthFactor = 0.95
	// DefaultBandwidthUpFactor: switching up needs bitrate under estimate × 0.7.
	// hls.js abrBandWidthUpFactor = 0.7.
	DefaultBandwidthUpFactor = 0.7
	// DefaultHeartbeatInterval: how often a viewer calls the counter. The story's web
	// page called it every 5 s.
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultHeartbeatPath is appended to a counter base URL that has no path
	// (DESIGN.md: GET /api/viewers).
	DefaultHeartbeatPath = "/api/viewers"
	// DefaultMasterPath is the multivariant playlist's path on a mirror when Targets.Master
	// is empty (DESIGN.md: the origin serves /live/master.m3u8).
	DefaultMasterPath = "/live/master.m3u8"
	// DefaultFailoverAfter: consecutive failed requests to one mirror before the viewer
	// moves to the next-nearest. stampede's choice (the story's page had no failover);
	// 3 rides out one retried timeout without flapping.
	DefaultFailoverAfter = 3
	// DefaultPingTimeout bounds each mirror's round-trip probe at join. stampede's choice:
	// a mirror slower than this to answer a playlist is not the nearest.
	DefaultPingTimeout = 2 * time.Second
	// DefaultIdleConnTimeout: a viewer closes a keep-alive connection unused this long.
	// Go's http.DefaultTransport IdleConnTimeout = 90 s (Chrome keeps used idle sockets
	// for up to 5 minutes; browsers vary).
	DefaultIdleConnTimeout = 90 * time.Second
	// DefaultUserAgent is sent with every request.
	DefaultUserAgent = "stampede-viewer/1"
	// DefaultClient is the HTTP client viewers use: ClientStampede.
	DefaultClient = ClientStampede
	// DefaultMirrorChoice is how a viewer picks its mirror: ChooseLowestRTT, as the
	// story's page did ("the mirror with the lowest ping").
	DefaultMirrorChoice = ChooseLowestRTT
)

// Mirror choices (PlayerConfig.MirrorChoice).
const (
	// ChooseLowestRTT pings every mirror at join and plays from the nearest.
	ChooseLowestRTT = "lowest-rtt"
	// ChooseRandom picks a mirror at random (no ping): the baseline lowest-rtt is
	// compared with.
	ChooseRandom = "random"
)

// HTTP clients a viewer can use (PlayerConfig.Client).
const (
	// ClientStampede is the viewer's own HTTP/1.1 client: one small struct per
	// connection, no goroutine while idle, bodies read through pooled buffers.
	ClientStampede = "stampede"
	// ClientNetHTTP is net/http with httptrace timings: heavier, speaks HTTP/2.
	ClientNetHTTP = "net/http"
)

// LoadPolicy is hls.js's LoadPolicy for one kind of load: two timeouts, and how often
// and how soon to retry after a timeout or after an error. Retry delays double from
// RetryDelay up to MaxRetryDelay (hls.js's default "exponential" backoff). 4xx answers
// are not retried (hls.js retryForHttpStatus).
type LoadPolicy struct {
	// TTFB is maxTimeToFirstByteMs: the first byte of the answer must come this soon.
	TTFB time.Duration
	// Total is maxLoadTimeMs: the whole body must be in this soon.
	Total time.Duration
	// TimeoutRetries, TimeoutRetryDelay, TimeoutMaxRetryDelay: timeoutRetry.
	TimeoutRetries       int
	TimeoutRetryDelay    time.Duration
	TimeoutMaxRetryDelay time.Duration
	// ErrorRetries, ErrorRetryDelay, ErrorMaxRetryDelay: errorRetry.
	ErrorRetries       int
	ErrorRetryDelay    time.Duration
	ErrorMaxRetryDelay time.Duration
}

// hls.js v1.5 default load policies (docs/API.md, "Load Policies").
var (
	// DefaultManifestPolicy is manifestLoadPolicy (the multivariant playlist). hls.js
	// sets no TTFB limit (Infinity); the total limit bounds it.
	DefaultManifestPolicy = LoadPolicy{
		TTFB: 20 * time.Second, Total: 20 * time.Second,
		TimeoutRetries: 2,
		ErrorRetries:   1, ErrorRetryDelay: time.Second, ErrorMaxRetryDelay: 8 * time.Second,
	}
	// DefaultPlaylistPolicy is playlistLoadPolicy (media playlists).
	DefaultPlaylistPolicy = LoadPolicy{
		TTFB: 10 * time.Second, Total: 20 * time.Second,
		TimeoutRetries: 2,
		ErrorRetries:   2, ErrorRetryDelay: time.Second, ErrorMaxRetryDelay: 8 * time.Second,
	}
	// DefaultFragmentPolicy is fragLoadPolicy (segments): TTFB 10 s, total 120 s,
	// 4 immediate retries after a timeout, 6 after an error backing off 1 s doubling to 8 s.
	DefaultFragmentPolicy = LoadPolicy{
		TTFB: 10 * time.Second, Total: 120 * time.Second,
		TimeoutRetries: 4,
		ErrorRetries:   6, ErrorRetryDelay: time.Second, ErrorMaxRetryDelay: 8 * time.Second,
	}
	// DefaultHeartbeatPolicy: a heartbeat is a fetch() from page script with no player
	// policy; it must answer within one interval and is not retried (the next one comes
	// anyway).
	DefaultHeartbeatPolicy = LoadPolicy{TTFB: DefaultHeartbeatInterval, Total: DefaultHeartbeatInterval}
)

// retryDelay is hls.js getRetryDelay with exponential backoff: RetryDelay × 2^n, capped.
func retryDelay(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// PlayerConfig is how every simulated viewer plays. A zero field takes its Default*.
type PlayerConfig struct {
	LiveSyncDurationCount int           // DefaultLiveSyncDurationCount (hls.js, RFC 8216 §6.3.3)
	MaxBufferLength       time.Duration // DefaultMaxBufferLength (hls.js maxBufferLength)
	BandwidthEstimate     int64         // bits/s; DefaultBandwidthEstimate (hls.js abrEwmaDefaultEstimate)
	ABRFastHalfLife       float64       // seconds; DefaultABRFastHalfLife (hls.js abrEwmaFastLive)
	ABRSlowHalfLife       float64       // seconds; DefaultABRSlowHalfLife (hls.js abrEwmaSlowLive)
	BandwidthFactor       float64       // DefaultBandwidthFactor (hls.js abrBandWidthFactor)
	BandwidthUpFactor     float64       // DefaultBandwidthUpFactor (hls.js abrBandWidthUpFactor)

	ManifestPolicy  LoadPolicy // DefaultManifestPolicy (hls.js manifestLoadPolicy); zero = default
	PlaylistPolicy  LoadPolicy // DefaultPlaylistPolicy (hls.js playlistLoadPolicy); zero = default
	FragmentPolicy  LoadPolicy // DefaultFragmentPolicy (hls.js fragLoadPolicy); zero = default
	HeartbeatPolicy LoadPolicy // DefaultHeartbeatPolicy; zero = default

	HeartbeatInterval time.Duration // DefaultHeartbeatInterval (the story: every 5 s)
	FailoverAfter     int           // DefaultFailoverAfter consecutive errors; negative = never
	PingTimeout       time.Duration // DefaultPingTimeout
	IdleConnTimeout   time.Duration // DefaultIdleConnTimeout (Go's DefaultTransport)
	UserAgent         string        // DefaultUserAgent
	// MirrorChoice is ChooseLowestRTT (default) or ChooseRandom.
	MirrorChoice string
	// Client is ClientStampede (default) or ClientNetHTTP.
	Client string
	// TLS configures https targets; nil verifies with the system roots.
	TLS *tls.Config
}

// withDefaults returns c with every zero field set to its default, or an error naming
// the first invalid field.
func (c PlayerConfig) withDefaults() (PlayerConfig, error) {
	setD := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setF := func(p *float64, d float64) {
		if *p == 0 {
			*p = d
		}
	}
	if c.LiveSyncDurationCount == 0 {
		c.LiveSyncDurationCount = DefaultLiveSyncDurationCount
	}
	setD(&c.MaxBufferLength, DefaultMaxBufferLength)
	if c.BandwidthEstimate == 0 {
		c.BandwidthEstimate = DefaultBandwidthEstimate
	}
	setF(&c.ABRFastHalfLife, DefaultABRFastHalfLife)
	setF(&c.ABRSlowHalfLife, DefaultABRSlowHalfLife)
	setF(&c.BandwidthFactor, DefaultBandwidthFactor)
	setF(&c.BandwidthUpFactor, DefaultBandwidthUpFactor)
	if c.ManifestPolicy == (LoadPolicy{}) {
		c.ManifestPolicy = DefaultManifestPolicy
	}
	if c.PlaylistPolicy == (LoadPolicy{}) {
		c.PlaylistPolicy = DefaultPlaylistPolicy
	}
	if c.FragmentPolicy == (LoadPolicy{}) {
		c.FragmentPolicy = DefaultFragmentPolicy
	}
	setD(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	if c.HeartbeatPolicy == (LoadPolicy{}) {
		c.HeartbeatPolicy = LoadPolicy{TTFB: c.HeartbeatInterval, Total: c.HeartbeatInterval}
	}
	if c.FailoverAfter == 0 {
		c.FailoverAfter = DefaultFailoverAfter
	}
	setD(&c.PingTimeout, DefaultPingTimeout)
	setD(&c.IdleConnTimeout, DefaultIdleConnTimeout)
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Client == "" {
		c.Client = DefaultClient
	}
	if c.MirrorChoice == "" {
		c.MirrorChoice = DefaultMirrorChoice
	}

	switch {
	case c.LiveSyncDurationCount < 0:
		return c, fmt.Errorf("PlayerConfig.LiveSyncDurationCount: %d is negative", c.LiveSyncDurationCount)
	case c.MaxBufferLength < 0:
		return c, fmt.Errorf("PlayerConfig.MaxBufferLength: %v is negative", c.MaxBufferLength)
	case c.BandwidthEstimate < 0:
		return c, fmt.Errorf("PlayerConfig.BandwidthEstimate: %d is negative", c.BandwidthEstimate)
	case c.ABRFastHalfLife < 0 || c.ABRSlowHalfLife < 0:
		return c, fmt.Errorf("PlayerConfig.ABRFastHalfLife/ABRSlowHalfLife: half-lives must be positive")
	case c.BandwidthFactor < 0 || c.BandwidthFactor > 1:
		return c, fmt.Errorf("PlayerConfig.BandwidthFactor: %v is outside (0, 1]", c.BandwidthFactor)
	case c.BandwidthUpFactor < 0 || c.BandwidthUpFactor > 1:
		return c, fmt.Errorf("PlayerConfig.BandwidthUpFactor: %v is outside (0, 1]", c.BandwidthUpFactor)
	case c.HeartbeatInterval < 0:
		return c, fmt.Errorf("PlayerConfig.HeartbeatInterval: %v is negative", c.HeartbeatInterval)
	case c.PingTimeout < 0:
		return c, fmt.Errorf("PlayerConfig.PingTimeout: %v is negative", c.PingTimeout)
	case c.IdleConnTimeout < 0:
		return c, fmt.Errorf("PlayerConfig.IdleConnTimeout: %v is negative", c.IdleConnTimeout)
	case c.MirrorChoice != ChooseLowestRTT && c.MirrorChoice != ChooseRandom:
		return c, fmt.Errorf("PlayerConfig.MirrorChoice: %q is neither %q nor %q", c.MirrorChoice, ChooseLowestRTT, ChooseRandom)
	case c.Client != ClientStampede && c.Client != ClientNetHTTP:
		return c, fmt.Errorf("PlayerConfig.Client: %q is neither %q nor %q", c.Client, ClientStampede, ClientNetHTTP)
	}
	for name, p := range map[string]LoadPolicy{
		"ManifestPolicy": c.ManifestPolicy, "PlaylistPolicy": c.PlaylistPolicy,
		"FragmentPolicy": c.FragmentPolicy, "HeartbeatPolicy": c.HeartbeatPolicy,
	} {
		if p.TTFB <= 0 || p.Total <= 0 {
			return c, fmt.Errorf("PlayerConfig.%s: TTFB and Total must be positive", name)
		}
		if p.TimeoutRetries < 0 || p.ErrorRetries < 0 || p.TimeoutRetryDelay < 0 || p.ErrorRetryDelay < 0 {
			return c, fmt.Errorf("PlayerConfig.%s: retries and delays must not be negative", name)
		}
	}
	return c, nil
}

// Defaults of a `stampede viewers` run (the flags refer to these).
const (
	// DefaultViewers is how many viewers a run starts.
	DefaultViewers = 100
	// DefaultRamp is how long the ramp takes to start them all.
	DefaultRamp = 10 * time.Second
	// DefaultRunDuration is how long a run lasts, ramp included.
	DefaultRunDuration = 60 * time.Second
)
