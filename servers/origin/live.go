package origin

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/servers/origin/mpegts"
)

// liveStream is the synthetic stream: the timeline, the muxer and one rendition per
// ladder step. Everything a request needs is precomputed or cached here.
type liveStream struct {
	tl         *timeline
	clock      clock.Clock
	mx         *muxer
	target     int    // EXT-X-TARGETDURATION
	extinf     string // "#EXTINF:2.000,\n"
	renditions []*rendition
	master     *response
}

// rendition is one step of the ladder.
type rendition struct {
	name      string // "500k"
	bitrate   int64  // nominal bits/s
	packets   int    // transport packets per segment
	bandwidth int64  // actual bits/s: every segment is exactly packets·188 bytes
	// playlist is the media playlist for the newest live edge seen, rendered once per edge.
	playlist atomic.Pointer[playlist]
	segments *segmentCache
	// onBuild is called after each segment build (metrics).
	onBuild func()
}

// response is a precomputed body with its header values, shared by every request
// (header value slices are assigned, never appended to).
type response struct {
	body          []byte
	contentLength []string
	etag          []string
	lastModified  []string
}

// newResponse precomputes a response. Its ETag is a hash of the body, so it changes
// whenever the bytes do, also across restarts with other settings.
func newResponse(body []byte, modified time.Time) *response {
	h := fnv.New64a()
	h.Write(body)
	etag := `"` + strconv.FormatUint(h.Sum64(), 36) + `"`
	r := &response{body: body, contentLength: []string{strconv.Itoa(len(body))}, etag: []string{etag}}
	if !modified.IsZero() {
		r.lastModified = []string{modified.UTC().Format(httpTimeFormat)}
	}
	return r
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// playlist is a rendered media playlist.
type playlist struct {
	latest int64
	*response
}

func newLiveStream(cfg Config) (*liveStream, error) {
	m, err := embeddedMedia()
	if err != nil {
		return nil, err
	}
	d := cfg.SegmentDuration
	epoch := cfg.Epoch
	if epoch.IsZero() {
		epoch = cfg.Clock.Now().Truncate(d)
	}
	ls := &liveStream{
		tl:     newTimeline(epoch, d, cfg.Window),
		clock:  cfg.Clock,
		mx:     newMuxer(m, d),
		target: targetDuration(d),
		extinf: "#EXTINF:" + formatSeconds(d) + ",\n",
	}
	ms := d.Milliseconds()
	need := int64(ls.mx.maxContentPackets())
	cacheBytes := int64(0)
	for _, bps := range Ladder(cfg.Bitrate, cfg.Renditions) {
		// Packets per segment: bps·d / (188·8 bits), rounded up.
		packets := ceilDiv(bps*ms, mpegts.PacketSize*8*1000)
		if packets < need {
			minBps := ceilDiv(need*mpegts.PacketSize*8*1000, ms)
			return nil, fmt.Errorf("bitrate: %s is below the %s bits/s the embedded media needs in %v segments",
				FormatBitrate(bps), strconv.FormatInt(minBps, 10), d)
		}
		r := &rendition{
			name:      FormatBitrate(bps),
			bitrate:   bps,
			packets:   int(packets),
			bandwidth: ceilDiv(packets*mpegts.PacketSize*8*1000, ms),
			segments:  newSegmentCache(cfg.Window),
			onBuild:   func() {},
		}
		cacheBytes += packets * mpegts.PacketSize * int64(len(r.segments.slots))
		ls.renditions = append(ls.renditions, r)
	}
	if cacheBytes > MaxCacheBytes {
		return nil, fmt.Errorf("bitrate: %d renditions from %s with window %d and %v segments need %d MiB of segment cache, more than %d MiB",
			cfg.Renditions, FormatBitrate(cfg.Bitrate), cfg.Window, d, cacheBytes>>20, MaxCacheBytes>>20)
	}
	ls.master = newResponse(ls.renderMaster(m), epoch)
	return ls, nil
}

// rendition returns the rendition with that name, or nil.
func (ls *liveStream) rendition(name string) *rendition {
	for _, r := range ls.renditions {
		if r.name == name {
			return r
		}
	}
	return nil
}

// renderMaster writes the multivariant playlist. BANDWIDTH is exact: every segment of a
// rendition has the same size.
func (ls *liveStream) renderMaster(m *media) []byte {
	b := []byte("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	for _, r := range ls.renditions {
		b = fmt.Appendf(b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,AVERAGE-BANDWIDTH=%d,CODECS=%q,RESOLUTION=%dx%d,FRAME-RATE=%d.000\n%s/index.m3u8\n",
			r.bandwidth, r.bandwidth, m.codecs, mediaWidth, mediaHeight, mediaFPS, r.name)
	}
	return b
}

// mediaPlaylist returns the playlist at now, rendering it if the live edge moved; nil
// before the first segment is published.
func (ls *liveStream) mediaPlaylist(r *rendition, now time.Time) *playlist {
	latest := ls.tl.latest(now)
	if latest < 0 {
		return nil
	}
	if p := r.playlist.Load(); p != nil && p.latest == latest {
		return p
	}
	// No Last-Modified: its whole seconds cannot tell apart playlists of sub-second
	// segments, so playlists revalidate by ETag only.
	p := &playlist{latest: latest, response: newResponse(ls.renderPlaylist(latest), time.Time{})}
	// Keep the newest rendering; a slower concurrent render of an older edge loses.
	for {
		old := r.playlist.Load()
		if old != nil && old.latest >= latest {
			break
		}
		if r.playlist.CompareAndSwap(old, p) {
			break
		}
	}
	return p
}

// renderPlaylist writes the media playlist whose newest segment is latest.
func (ls *liveStream) renderPlaylist(latest int64) []byte {
	first := ls.tl.first(latest)
	b := make([]byte, 0, 128+int(latest-first+1)*80)
	b = fmt.Appendf(b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", ls.target, first)
	for n := first; n <= latest; n++ {
		b = append(b, "#EXT-X-PROGRAM-DATE-TIME:"...)
		b = ls.tl.start(n).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		b = append(b, '\n')
		b = append(b, ls.extinf...)
		b = strconv.AppendInt(b, n, 10)
		b = append(b, ".ts\n"...)
	}
	return b
}

// segment returns segment n of r, built on first use (the caller checks availability).
func (ls *liveStream) segment(r *rendition, n int64) (*segment, error) {
	seg, built, err := r.segments.get(n, func(n int64) (*segment, error) {
		data, err := ls.mx.build(n, r.packets)
		if err != nil {
			return nil, err
		}
		published := ls.tl.published(n)
		return &segment{seq: n, published: published, response: newResponse(data, published)}, nil
	})
	if built {
		r.onBuild()
	}
	return seg, err
}

// formatSeconds renders a whole-millisecond duration as seconds with three decimals.
func formatSeconds(d time.Duration) string {
	ms := d.Milliseconds()
	return fmt.Sprintf("%d.%03d", ms/1000, ms%1000)
}
