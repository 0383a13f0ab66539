// Package origin is a live HLS origin: what ffmpeg writing .m3u8/.ts files and nginx
// serving them were on the upstream server, as one Go server with no runtime dependency.
//
// By default it serves a synthetic live stream on a wall clock. Segment N covers
// [Epoch + N·d, Epoch + (N+1)·d) and is published once that interval has passed. Media
// playlists are a sliding window of Window segments (RFC 8216 §6.2.1–6.2.2) with
// EXT-X-MEDIA-SEQUENCE, EXT-X-TARGETDURATION and an EXT-X-PROGRAM-DATE-TIME per segment; a
// segment that slides out stays downloadable for one segment duration plus the playlist
// duration, and the media sequence never decreases. Until segment 0 is published, media
// playlists answer 404 (set Epoch in the past to start full). Segments are real MPEG-TS (H.264 +
// AAC that ffmpeg decodes): a small GOP and tone, encoded once and embedded, re-timed for
// each segment so PTS, PCR and continuity counters run on across segment boundaries, then
// padded with null packets to the rendition's bit rate. A segment is built once, on its
// first request, and served from memory to every later viewer; a playlist is rendered
// once per live-edge change; requests do no encoding.
//
// With Config.Dir it serves a directory that ffmpeg (or anything) writes instead — the
// original setup — and with Config.FFmpeg it starts ffmpeg itself (lavfi testsrc) writing
// HLS into a temporary directory and serves that.
//
// URLs: /live/master.m3u8 (multivariant), /live/{rendition}/index.m3u8,
// /live/{rendition}/{N}.ts, /metrics, /healthz. Renditions are named by bit rate
// ("500k", "1500k", "3000k"); see Ladder.
package origin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/internal/serverkit"
)

// Defaults; a zero Config field means its default.
const (
	DefaultSegmentDuration = 2 * time.Second
	DefaultWindow          = 6
	DefaultRenditions      = 1
	DefaultBitrate         = 500_000 // bits/s of the lowest rendition
)

// Limits New enforces.
const (
	MinSegmentDuration = 100 * time.Millisecond
	MaxSegmentDuration = time.Minute
	// MinWindow is RFC 8216 §6.2.2's floor: a live playlist never lasts less than three
	// target durations (New also checks the duration, not only the count).
	MinWindow     = 3
	MaxWindow     = 1000
	MaxRenditions = 6
	// MaxCacheBytes bounds the memory the synthetic stream may need for its segments:
	// every rendition keeps the segments a client may still request (2·Window+1).
	MaxCacheBytes = 1 << 30
)

// HTTP caching policy, the same for the synthetic stream and for served directories.
const (
	// PlaylistCacheControl lets a mirror cache a playlist for one second, as the nginx
	// mirrors in the original setup did; a playlist changes once per segment duration.
	PlaylistCacheControl = "public, max-age=1"
	// SegmentCacheControl: a segment's bytes never change once published.
	SegmentCacheControl = "public, max-age=3600"
	// NotFoundCacheControl keeps a 404 (a segment not yet published, or long gone) out of
	// caches, so a mirror that asked early asks again.
	NotFoundCacheControl = "no-store"

	ContentTypePlaylist = "application/vnd.apple.mpegurl"
	ContentTypeSegment  = "video/mp2t"
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// SegmentDuration is d, every segment's duration: a whole number of milliseconds
	// between MinSegmentDuration and MaxSegmentDuration. Default 2 s.
	SegmentDuration time.Duration
	// Window is the number of segments in a media playlist, at least MinWindow and
	// lasting at least three target durations (RFC 8216 §6.2.2). Default 6.
	Window int
	// Renditions is the size of the bit-rate ladder behind /live/master.m3u8, 1 to
	// MaxRenditions. Rendition i has Bitrate × 1, 3, 6, 12, 24, 48 (see Ladder): the
	// default 500k gives 500k, 1500k, 3000k for three. Default 1.
	Renditions int
	// Bitrate is the lowest rendition's bit rate in bits/s. Synthetic segments are padded
	// with null packets to exactly this rate; New rejects a rate below what the embedded
	// media needs at the chosen segment duration. Default 500 000.
	Bitrate int64
	// Epoch is when segment 0 starts. Zero means now at New, truncated to the segment
	// duration. An epoch in the past starts with a full playlist (e.g. now minus
	// Window·SegmentDuration); two origins with the same epoch and settings serve
	// byte-identical segments under the same names. Synthetic stream only.
	Epoch time.Time
	// Dir, when set, serves that directory (as ffmpeg's HLS muxer writes it) under /live/
	// instead of the synthetic stream: files ending .m3u8, .ts, .m4s, .mp4, .aac, .vtt,
	// never outside Dir (no "..", no hidden files, no symlink leading out).
	Dir string
	// FFmpeg starts ffmpeg (lavfi testsrc + sine, H.264/AAC, the same ladder) writing HLS
	// into a temporary directory and serves that; Close stops it. Not with Dir.
	FFmpeg bool
	// FFmpegPath is the ffmpeg executable for FFmpeg; default "ffmpeg" from $PATH.
	FFmpegPath string
	// Clock is the time source of the synthetic stream; nil is the wall clock.
	Clock clock.Clock
	// Labels are constant labels on every metric (run, tuning).
	Labels serverkit.Labels
	// Logger receives the server's logs; nil uses slog.Default().
	Logger *slog.Logger
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.SegmentDuration == 0 {
		c.SegmentDuration = DefaultSegmentDuration
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Renditions == 0 {
		c.Renditions = DefaultRenditions
	}
	if c.Bitrate == 0 {
		c.Bitrate = DefaultBitrate
	}
	if c.FFmpegPath == "" {
		c.FFmpegPath = "ffmpeg"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Clock = clock.Or(c.Clock)
	return c
}

// validate checks a defaulted config; each error starts with the field's flag name.
func (c Config) validate() error {
	d := c.SegmentDuration
	switch {
	case d < MinSegmentDuration || d > MaxSegmentDuration:
		return fmt.Errorf("segment-duration: %v is outside [%v, %v]", d, MinSegmentDuration, MaxSegmentDuration)
	case d%time.Millisecond != 0:
		return fmt.Errorf("segment-duration: %v is not a whole number of milliseconds", d)
	}
	if c.Window < MinWindow {
		return fmt.Errorf("window: must be >= %d (RFC 8216 §6.2.2), got %d", MinWindow, c.Window)
	}
	if c.Window > MaxWindow {
		return fmt.Errorf("window: must be <= %d, got %d", MaxWindow, c.Window)
	}
	if td := targetDuration(d); time.Duration(c.Window)*d < 3*time.Duration(td)*time.Second {
		need := (3*time.Duration(td)*time.Second + d - 1) / d
		return fmt.Errorf("window: %d segments of %v last less than three target durations (3×%ds, RFC 8216 §6.2.2); use >= %d",
			c.Window, d, td, need)
	}
	if c.Renditions < 1 || c.Renditions > MaxRenditions {
		return fmt.Errorf("renditions: must be between 1 and %d, got %d", MaxRenditions, c.Renditions)
	}
	if c.Bitrate <= 0 {
		return fmt.Errorf("bitrate: must be > 0, got %d", c.Bitrate)
	}
	if c.Bitrate > maxBitrate {
		return fmt.Errorf("bitrate: %s is above %s", FormatBitrate(c.Bitrate), FormatBitrate(maxBitrate))
	}
	if c.Dir != "" && c.FFmpeg {
		return errors.New("dir: cannot be combined with ffmpeg (ffmpeg mode writes its own directory)")
	}
	if !c.Epoch.IsZero() && (c.Epoch.Year() < 1970 || c.Epoch.Year() > 2200) {
		return fmt.Errorf("epoch: %v is outside the years 1970 to 2200", c.Epoch)
	}
	return nil
}

// maxBitrate keeps the ladder's arithmetic far from overflow (the cache limit is the
// practical bound).
const maxBitrate = 10_000_000_000

// Server is a live HLS origin. Its handler is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	handler http.Handler
	// metricsHandler serves reg.
	metricsHandler http.Handler

	// Synthetic stream (nil when serving a directory).
	live *liveStream
	// Directory mode (Dir or FFmpeg); nil for the synthetic stream.
	files *fileServer
	ff    *ffmpegProcess // nil unless FFmpeg
}

// New validates cfg and builds the server. Errors name the offending field.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.reg, s.metrics = newMetrics(cfg.Labels)
	switch {
	case cfg.FFmpeg:
		ff, err := startFFmpeg(cfg)
		if err != nil {
			return nil, err
		}
		s.ff = ff
		files, err := newFileServer(ff.dir)
		if err != nil {
			ff.stop()
			ff.removeDir()
			return nil, fmt.Errorf("ffmpeg: %w", err)
		}
		s.files = files
		s.metrics.registerFFmpeg(ff)
	case cfg.Dir != "":
		fi, err := os.Stat(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("dir: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("dir: %s is not a directory", cfg.Dir)
		}
		files, err := newFileServer(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("dir: %w", err)
		}
		s.files = files
	default:
		live, err := newLiveStream(cfg)
		if err != nil {
			return nil, err
		}
		s.live = live
		s.metrics.registerLive(live)
	}
	s.metricsHandler = serverkit.MetricsHandler(s.reg)
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s, nil
}

// Handler serves /live/..., /metrics and /healthz.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry is the server's Prometheus registry (what /metrics serves).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Renditions lists the rendition names, lowest bit rate first ("500k", ...). In
// directory mode without FFmpeg the names are whatever the directory holds, so the list
// is empty.
func (s *Server) Renditions() []string {
	switch {
	case s.live != nil:
		names := make([]string, len(s.live.renditions))
		for i, r := range s.live.renditions {
			names[i] = r.name
		}
		return names
	case s.ff != nil:
		return append([]string(nil), s.ff.names...)
	}
	return nil
}

// Epoch is when segment 0 of the synthetic stream starts (zero in directory mode).
func (s *Server) Epoch() time.Time {
	if s.live == nil {
		return time.Time{}
	}
	return s.live.tl.epoch
}

// Close stops ffmpeg if this server started it and releases the served directory. The
// handler keeps answering (a closed directory answers 404).
func (s *Server) Close() error {
	var errs []error
	if s.ff != nil {
		errs = append(errs, s.ff.stop())
	}
	if s.files != nil {
		errs = append(errs, s.files.close())
	}
	if s.ff != nil {
		errs = append(errs, s.ff.removeDir())
	}
	return errors.Join(errs...)
}
