package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stampede-live/stampede/internal/serverkit"
	"github.com/stampede-live/stampede/servers/origin"
)

func init() {
	register(command{name: "origin", summary: "a live HLS origin (wall-clock segments, sliding-window playlists)", run: runOrigin})
}

// bitrateFlag is a bit rate flag that accepts 500000, 500k or 1.5M.
type bitrateFlag int64

func (b *bitrateFlag) String() string { return origin.FormatBitrate(int64(*b)) }
func (b *bitrateFlag) Set(s string) error {
	v, err := origin.ParseBitrate(s)
	if err != nil {
		return err
	}
	*b = bitrateFlag(v)
	return nil
}

// epochFlag is a time: RFC 3339, or a duration relative to now ("-12s": 12 s ago).
type epochFlag struct{ t time.Time }

func (e *epochFlag) String() string {
	if e.t.IsZero() {
		return ""
	}
	return e.t.Format(time.RFC3339Nano)
}

func (e *epochFlag) Set(s string) error {
	if d, err := time.ParseDuration(s); err == nil {
		e.t = time.Now().Add(d)
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want an RFC 3339 time or a duration relative to now like -12s")
	}
	e.t = t
	return nil
}

func runOrigin(ctx context.Context, args []string) error {
	fs := newFlagSet("origin", "[--listen ADDR] [--segment-duration D] [--window N] [--renditions N] [--bitrate B] [--dir PATH | --ffmpeg]", nil)
	var sf serverFlags
	sf.register(fs, "127.0.0.1:8080")
	segment := fs.Duration("segment-duration", origin.DefaultSegmentDuration, "duration of every segment (whole milliseconds)")
	window := fs.Int("window", origin.DefaultWindow, fmt.Sprintf("segments in a media playlist (>= %d, RFC 8216 §6.2.2)", origin.MinWindow))
	renditions := fs.Int("renditions", origin.DefaultRenditions, fmt.Sprintf("renditions in the ladder, 1..%d (the lowest bit rate × 1, 3, 6, 12, 24, 48)", origin.MaxRenditions))
	bitrate := bitrateFlag(origin.DefaultBitrate)
	fs.Var(&bitrate, "bitrate", "bit rate of the lowest rendition (500000, 500k, 1.5M); segments are padded to it")
	var epoch epochFlag
	fs.Var(&epoch, "epoch", "when segment 0 starts: RFC 3339, or relative like -12s for a full playlist at once (default: now)")
	dir := fs.String("dir", "", "serve this directory (as ffmpeg's HLS muxer writes it) under /live/ instead of the synthetic stream")
	ffmpeg := fs.Bool("ffmpeg", false, "start ffmpeg (lavfi testsrc) writing HLS into a temporary directory and serve that")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Config treats zero as "default"; on the command line a zero is a mistake.
	switch {
	case *segment <= 0:
		return usageError("--segment-duration: must be > 0, got %v", *segment)
	case *window <= 0:
		return usageError("--window: must be >= %d, got %d", origin.MinWindow, *window)
	case *renditions <= 0:
		return usageError("--renditions: must be >= 1, got %d", *renditions)
	}
	ln, log, err := sf.setup("origin")
	if err != nil {
		return err
	}
	srv, err := origin.New(origin.Config{
		SegmentDuration: *segment,
		Window:          *window,
		Renditions:      *renditions,
		Bitrate:         int64(bitrate),
		Epoch:           epoch.t,
		Dir:             *dir,
		FFmpeg:          *ffmpeg,
		Labels:          sf.labels,
		Logger:          log,
	})
	if err != nil {
		ln.Close()
		// Config errors name the field, which is the flag's name.
		if !strings.HasPrefix(err.Error(), "ffmpeg:") {
			return usageError("--%v", err)
		}
		return err
	}
	attrs := []any{"master", "http://" + ln.Addr().String() + "/live/master.m3u8", "renditions", strings.Join(srv.Renditions(), ",")}
	if !srv.Epoch().IsZero() {
		attrs = append(attrs, "epoch", srv.Epoch())
	}
	log.Info("serving", attrs...)
	serveErr := serverkit.Serve(ctx, origin.NewHTTPServer(srv.Handler(), log), ln, 0)
	closeErr := srv.Close()
	log.Info("stopped")
	if serveErr != nil {
		return serveErr
	}
	return closeErr
}
