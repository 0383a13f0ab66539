package origin

import (
	"sync/atomic"
	"time"
)

// timeline is the live clock of the synthetic stream: which segments exist at a given
// instant. All rules of RFC 8216 §6.2.1–6.2.2 the origin follows live here.
//
//   - Segment n covers [epoch + n·d, epoch + (n+1)·d) and is published at its end.
//   - The playlist lists the newest window published segments.
//   - Segment n leaves the playlist when segment n+window is published, and stays
//     downloadable for d plus the playlist's duration (window·d) after that.
//   - The live edge never moves back, even if the wall clock steps back.
type timeline struct {
	epoch  time.Time
	d      time.Duration
	window int64
	// edge is the newest live edge handed out (-1: none yet); it only grows, which is
	// what keeps EXT-X-MEDIA-SEQUENCE from ever decreasing.
	edge atomic.Int64
}

func newTimeline(epoch time.Time, d time.Duration, window int) *timeline {
	tl := &timeline{epoch: epoch, d: d, window: int64(window)}
	tl.edge.Store(-1)
	return tl
}

// latest returns the newest published segment at now, or -1 before the first one.
func (tl *timeline) latest(now time.Time) int64 {
	n := int64(-1)
	if el := now.Sub(tl.epoch); el >= tl.d {
		n = int64(el/tl.d) - 1
	}
	for {
		edge := tl.edge.Load()
		if n <= edge {
			return edge
		}
		if tl.edge.CompareAndSwap(edge, n) {
			return n
		}
	}
}

// first returns the oldest segment listed in the playlist whose newest segment is
// latest (latest >= 0).
func (tl *timeline) first(latest int64) int64 {
	return max(0, latest-tl.window+1)
}

// oldest returns the oldest segment still downloadable when latest is the live edge:
// removed segments stay for d + window·d, i.e. while fewer than window+2 newer segments
// have been published since their removal. See available for the derivation.
func (tl *timeline) oldest(latest int64) int64 {
	return max(0, latest-2*tl.window)
}

// available reports whether segment n may be downloaded when latest is the live edge.
//
// Segment n is removed from the playlist at R = epoch + (n+window+1)·d (when n+window is
// published) and must stay until R + d + window·d = epoch + (n+2·window+2)·d. At time t
// the live edge is L = floor((t-epoch)/d) - 1, so t < epoch + (n+2·window+2)·d exactly
// when L+1 < n+2·window+2, i.e. n >= L - 2·window.
func (tl *timeline) available(n, latest int64) bool {
	return n >= 0 && n <= latest && n >= tl.oldest(latest)
}

// start is when segment n begins (its EXT-X-PROGRAM-DATE-TIME).
func (tl *timeline) start(n int64) time.Time {
	return tl.epoch.Add(time.Duration(n) * tl.d)
}

// published is when segment n becomes available.
func (tl *timeline) published(n int64) time.Time { return tl.start(n + 1) }

// targetDuration is EXT-X-TARGETDURATION for segments of duration d: the duration
// rounded up to whole seconds (every EXTINF rounded to the nearest integer must not
// exceed it, RFC 8216 §4.3.3.1).
func targetDuration(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
