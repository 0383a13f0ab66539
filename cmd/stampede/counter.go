package main

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stampede-live/stampede/internal/serverkit"
	"github.com/stampede-live/stampede/servers/counter"
)

func init() {
	register(command{name: "counter", summary: "the viewer counter (GET /api/viewers), with swappable stores", run: runCounter})
}

// counterFlagFor maps counter.Config fields to the flags that set them, so a config
// error names the flag the user typed.
var counterFlagFor = map[string]string{
	"Store": "--store", "Expire": "--expire", "Sweep": "--sweep",
	"TrustedProxies": "--trusted-proxies", "MaxViewers": "--max-viewers", "Shards": "--shards",
}

func runCounter(ctx context.Context, args []string) error {
	fs := newFlagSet("counter", "--listen ADDR --store NAME --expire D --sweep D [--trusted-proxies CIDR,...] [--max-viewers N]", nil)
	var sf serverFlags
	sf.register(fs, counter.DefaultListen)
	var (
		cfg     counter.Config
		trusted string
	)
	fs.StringVar(&cfg.Store, "store", counter.DefaultStore, "where viewers are kept: "+strings.Join(counter.StoreNames, ", ")+" (unsafe has no lock: it reproduces the crash)")
	fs.DurationVar(&cfg.Expire, "expire", counter.DefaultExpire, "drop a viewer silent this long")
	fs.DurationVar(&cfg.Sweep, "sweep", counter.DefaultSweep, "look for silent viewers this often")
	fs.StringVar(&trusted, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For / CF-Connecting-IP name the viewer (default: trust no one)")
	fs.IntVar(&cfg.MaxViewers, "max-viewers", counter.DefaultMaxViewers, "cap on tracked viewers; new ones beyond it are counted as overflow, not stored (-1: no cap)")
	fs.IntVar(&cfg.Shards, "shards", counter.DefaultShards, "shards of the sharded store (rounded up to a power of two)")
	fs.BoolVar(&cfg.IgnoreIDParam, "ignore-id-param", false, "identify viewers by address only, ignoring ?id=")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !slices.Contains(counter.StoreNames, cfg.Store) {
		return usageError("--store: unknown store %q (want one of %s)", cfg.Store, strings.Join(counter.StoreNames, ", "))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--expire", cfg.Expire}, {"--sweep", cfg.Sweep}} {
		if d.v <= 0 {
			return usageError("%s must be > 0, got %v", d.flag, d.v)
		}
	}
	if cfg.MaxViewers == 0 {
		return usageError("--max-viewers must be > 0, or -1 for no cap")
	}
	if cfg.Shards <= 0 {
		return usageError("--shards must be > 0, got %d", cfg.Shards)
	}
	var err error
	if cfg.TrustedProxies, err = counter.ParsePrefixes(trusted); err != nil {
		return usageError("--trusted-proxies: %v", err)
	}
	cfg.Labels = sf.labels

	ln, log, err := sf.setup("counter")
	if err != nil {
		return err
	}
	cfg.Logger = log
	srv, err := counter.New(cfg)
	if err != nil {
		ln.Close()
		var ce *counter.ConfigError
		if errors.As(err, &ce) {
			return usageError("%s: %v", counterFlagFor[ce.Field], ce.Err)
		}
		return err
	}
	defer srv.Close()
	log.Info("counter ready", "store", cfg.Store, "expire", cfg.Expire, "sweep", cfg.Sweep,
		"max_viewers", cfg.MaxViewers, "trusted_proxies", trusted)
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute, // above the 5 s heartbeat, so a viewer keeps its connection
		MaxHeaderBytes:    64 << 10,
	}
	return serverkit.Serve(ctx, hs, ln, 0)
}
