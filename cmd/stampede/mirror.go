package main

import (
	"context"
	"flag"
	"time"

	"github.com/stampede-live/stampede/servers/mirror"
)

func init() {
	register(command{
		name:    "mirror",
		summary: "a caching HLS mirror of one upstream (per-kind TTLs, coalescing, stale-if-error, FD-safe)",
		run:     runMirror,
	})
}

func runMirror(ctx context.Context, args []string) error {
	fs := newFlagSet("mirror", "--upstream URL [flags]", nil)
	var sf serverFlags
	sf.register(fs, mirror.DefaultListen)
	var (
		cfg          mirror.Config
		cacheSize    = sizeFlag(mirror.DefaultCacheSize)
		maxObject    = sizeFlag(mirror.DefaultMaxObjectSize)
		playlistTTL  = mirror.DefaultPlaylistTTL
		segmentTTL   = mirror.DefaultSegmentTTL
		staleIfError = mirror.DefaultStaleIfError
		coalesce     = true
	)
	fs.StringVar(&cfg.Upstream, "upstream", "", "origin to mirror, http://host:port[/base] (required)")
	fs.DurationVar(&playlistTTL, "playlist-ttl", playlistTTL, "how long a playlist stays fresh (0: always revalidate)")
	fs.DurationVar(&segmentTTL, "segment-ttl", segmentTTL, "how long a segment stays fresh (0: always revalidate)")
	fs.DurationVar(&cfg.NegativeTTL, "negative-ttl", mirror.DefaultNegativeTTL, "how long a 404/410 is cached (0: not cached)")
	fs.DurationVar(&staleIfError, "stale-if-error", staleIfError, "serve the last good copy when the upstream fails or is slower than this (0: never)")
	fs.DurationVar(&cfg.StaleWhileRevalidate, "stale-while-revalidate", 0, "serve an expired copy at once for this long while one background fetch refreshes it (0: off)")
	fs.BoolVar(&cfg.HonorCacheControl, "honor-cache-control", false, "let the upstream's Cache-Control override the TTLs")
	fs.Var(&cacheSize, "cache-size", "cache size in bytes (units: KiB, MiB, GiB, KB, MB, GB)")
	fs.Var(&maxObject, "max-object-size", "largest object cached; larger ones stream through (capped at --cache-size)")
	fs.IntVar(&cfg.UpstreamConns, "upstream-conns", mirror.DefaultUpstreamConns, "upstream keep-alive pool size")
	fs.DurationVar(&cfg.UpstreamTimeout, "upstream-timeout", mirror.DefaultUpstreamTimeout, "upstream dial, response-header and body-pause timeout")
	fs.IntVar(&cfg.MaxConns, "max-conns", mirror.DefaultMaxConns, "most open client connections (0: unlimited)")
	fs.StringVar(&cfg.Overload, "overload", mirror.DefaultOverload, "beyond --max-conns: shed (503 + Retry-After) or queue")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", mirror.DefaultIdleTimeout, "close keep-alive connections idle this long")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", mirror.DefaultReadHeaderTimeout, "time a client has to send its request headers")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", mirror.DefaultWriteTimeout, "time to write one response")
	fs.BoolVar(&coalesce, "coalesce", coalesce, "make concurrent misses for one object share one upstream request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Upstream == "" {
		return usageError("--upstream is required")
	}
	for name, d := range map[string]time.Duration{"--playlist-ttl": playlistTTL, "--segment-ttl": segmentTTL,
		"--negative-ttl": cfg.NegativeTTL, "--stale-if-error": staleIfError, "--stale-while-revalidate": cfg.StaleWhileRevalidate, "--upstream-timeout": cfg.UpstreamTimeout,
		"--idle-timeout": cfg.IdleTimeout, "--read-header-timeout": cfg.ReadHeaderTimeout, "--write-timeout": cfg.WriteTimeout} {
		if d < 0 {
			return usageError("%s %v: must not be negative", name, d)
		}
	}
	if maxObject > cacheSize {
		maxObject = cacheSize
	}
	// On the command line 0 means "off"; in Config 0 means "default" and negative "off".
	cfg.PlaylistTTL = zeroIsOff(playlistTTL)
	cfg.SegmentTTL = zeroIsOff(segmentTTL)
	cfg.StaleIfError = zeroIsOff(staleIfError)
	cfg.CacheSize, cfg.MaxObjectSize = int64(cacheSize), int64(maxObject)
	cfg.DisableCoalescing = !coalesce
	cfg.Labels = sf.labels
	if err := cfg.Validate(); err != nil { // before taking the port
		return usageError("%v", err)
	}
	ln, log, err := sf.setup("mirror")
	if err != nil {
		return err
	}
	cfg.Logger = log
	m, err := mirror.New(cfg)
	if err != nil {
		ln.Close()
		return usageError("%v", err)
	}
	defer m.Close()
	log.Info("mirroring", "upstream", cfg.Upstream, "playlist_ttl", playlistTTL, "segment_ttl", segmentTTL,
		"cache_size", mirror.FormatSize(cfg.CacheSize), "max_conns", cfg.MaxConns, "coalesce", coalesce)
	return m.Serve(ctx, ln)
}

func zeroIsOff(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// sizeFlag is a byte size flag that accepts units ("256MiB").
type sizeFlag int64

var _ flag.Value = (*sizeFlag)(nil)

func (s *sizeFlag) String() string { return mirror.FormatSize(int64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := mirror.ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}
