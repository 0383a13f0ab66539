package origin

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stampede-live/stampede/servers/origin/mpegts"
)

// Transport stream layout of synthetic segments (the PIDs ffmpeg's muxer uses).
const (
	programNumber = 1
	pmtPID        = 0x1000
	videoPID      = 0x100
	audioPID      = 0x101
	// ptsDelay is how far presentation times run ahead of the PCR: a frame's first packet
	// is scheduled no earlier than its capture time, and the decoder may show it this
	// much later (ffmpeg's mpegts muxer uses 0.7 s too).
	ptsDelay = 63_000
	// psiPackets is the PAT and PMT at the start of every segment.
	psiPackets = 2
)

var pmtStreams = []mpegts.Stream{
	{Type: mpegts.StreamTypeH264, PID: videoPID},
	{Type: mpegts.StreamTypeAAC, PID: audioPID},
}

// muxer builds synthetic segments of one duration from the embedded media. It holds no
// mutable state, so segment bytes depend only on (duration, packets, sequence number):
// two origins with the same settings serve identical segments.
//
// Timestamps count from the epoch: segment n's media starts at n·D (D = d in 90 kHz
// ticks). Video frame f (PTS f·3600 + ptsDelay) lies in segment n when its start is in
// [n·D, (n+1)·D); every segment restarts the GOP at its first frame, so each begins with
// an IDR. Audio frame j (PTS j·1920 + ptsDelay) loops the tone continuously.
//
// Continuity counters run on across segments without any state: the PAT and PMT appear
// once per segment (counter n mod 16), and the audio and video PIDs carry a multiple of
// 16 packets per segment (a PES is spread over a few more packets when needed), so their
// counters start every segment at 0 and end it at 15. PCRs sit on the first packet of
// each video frame and follow the packet's position at the constant rate, so they run on
// linearly across segments too.
type muxer struct {
	m     *media
	ticks int64 // D: segment duration in 90 kHz ticks
	// videoPES holds each access unit's PES payload length (header included).
	videoPESLen []int
}

func newMuxer(m *media, d time.Duration) *muxer {
	mx := &muxer{m: m, ticks: int64(d / (time.Second / 90_000))}
	for _, au := range m.video {
		mx.videoPESLen = append(mx.videoPESLen, mpegts.PESHeaderLen+len(au))
	}
	return mx
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) == (b < 0) {
		q++
	}
	return q
}

func roundUp16(n int) int { return (n + 15) &^ 15 }

// videoFirst returns the first video frame that belongs to segment n.
func (mx *muxer) videoFirst(n int64) int64 { return ceilDiv(n*mx.ticks, videoTicks) }
func (mx *muxer) audioFirst(n int64) int64 { return ceilDiv(n*mx.ticks, audioTicks) }

// videoFirstPacket is the adaptation field of a video frame's first packet: a PCR on
// every frame (40 ms apart, inside the 100 ms the standard allows), and the random access
// flag on the IDR.
func videoFirstPacket(unit int) mpegts.First {
	return mpegts.First{PCR: true, RandomAccess: unit == 0}
}

var audioFirstPacket = mpegts.First{}

// maxContentPackets bounds the packets any segment needs before padding: PAT, PMT, the
// most video frames a segment can hold, and the most audio frames at their largest,
// each PID rounded up to a multiple of 16.
func (mx *muxer) maxContentPackets() int {
	frames := int(ceilDiv(mx.ticks, videoTicks))
	video := 0
	for i := range frames {
		unit := i % len(mx.m.video)
		video += mpegts.MinPackets(mx.videoPESLen[unit], videoFirstPacket(unit))
	}
	audioFrames := int(ceilDiv(mx.ticks, audioTicks))
	largest := 0
	for _, f := range mx.m.audio {
		largest = max(largest, mpegts.MinPackets(mpegts.PESHeaderLen+len(f), audioFirstPacket))
	}
	return psiPackets + roundUp16(video) + roundUp16(audioFrames*largest)
}

// unit is one PES waiting to be scheduled.
type unit struct {
	pid     uint16
	release int64 // ticks after the segment start before which it is not sent
	pes     []byte
	first   mpegts.First
	packets int
}

// build returns segment n as exactly `packets` transport packets.
func (mx *muxer) build(n int64, packets int) ([]byte, error) {
	segStart := n * mx.ticks
	var video, audio []*unit
	for f, end := mx.videoFirst(n), mx.videoFirst(n+1); f < end; f++ {
		idx := int(f-mx.videoFirst(n)) % len(mx.m.video)
		au := mx.m.video[idx]
		pes, err := mpegts.AppendPESHeader(make([]byte, 0, mpegts.PESHeaderLen+len(au)), mpegts.StreamIDVideo, f*videoTicks+ptsDelay, len(au))
		if err != nil {
			return nil, err
		}
		first := videoFirstPacket(idx)
		video = append(video, &unit{pid: videoPID, release: f*videoTicks - segStart, pes: append(pes, au...),
			first: first, packets: mpegts.MinPackets(mpegts.PESHeaderLen+len(au), first)})
	}
	for j, end := mx.audioFirst(n), mx.audioFirst(n+1); j < end; j++ {
		frame := mx.m.audio[int(j%int64(len(mx.m.audio)))]
		pes, err := mpegts.AppendPESHeader(make([]byte, 0, mpegts.PESHeaderLen+len(frame)), mpegts.StreamIDAudio, j*audioTicks+ptsDelay, len(frame))
		if err != nil {
			return nil, err
		}
		audio = append(audio, &unit{pid: audioPID, release: j*audioTicks - segStart, pes: append(pes, frame...),
			first: audioFirstPacket, packets: mpegts.MinPackets(mpegts.PESHeaderLen+len(frame), audioFirstPacket)})
	}
	if err := padTo16(video); err != nil {
		return nil, fmt.Errorf("segment %d video: %w", n, err)
	}
	if err := padTo16(audio); err != nil {
		return nil, fmt.Errorf("segment %d audio: %w", n, err)
	}

	// Packetize in release order (video first on ties).
	type queued struct {
		pkt     mpegts.Packet
		release int64
		pcr     bool
		video   bool
	}
	var content []queued
	var buf []mpegts.Packet
	for vi, ai := 0, 0; vi < len(video) || ai < len(audio); {
		var u *unit
		if ai >= len(audio) || vi < len(video) && video[vi].release <= audio[ai].release {
			u, vi = video[vi], vi+1
		} else {
			u, ai = audio[ai], ai+1
		}
		var err error
		buf, err = mpegts.Packetize(buf[:0], u.pid, u.pes, u.packets, u.first)
		if err != nil {
			return nil, err
		}
		for k, p := range buf {
			content = append(content, queued{pkt: p, release: u.release, pcr: k == 0 && u.first.PCR, video: u.pid == videoPID})
		}
	}
	if psiPackets+len(content) > packets {
		return nil, fmt.Errorf("segment %d needs %d packets, has %d", n, psiPackets+len(content), packets)
	}

	// Schedule at a constant rate: slot i goes out at segStart + i·D/packets. A packet is
	// sent once its frame's capture time has come, or earlier when the packets left
	// would not otherwise fit; null packets fill the rest.
	out := make([]byte, 0, packets*mpegts.PacketSize)
	cc := uint8(n & 0x0F)
	pat := mpegts.PAT(programNumber, pmtPID, cc)
	pmt := mpegts.PMT(pmtPID, programNumber, videoPID, pmtStreams, cc)
	out = append(out, pat[:]...)
	out = append(out, pmt[:]...)
	null := mpegts.Null()
	var ccVideo, ccAudio uint8
	next := 0
	total := int64(packets)
	for i := int64(psiPackets); i < total; i++ {
		left := len(content) - next
		if left == 0 || content[next].release*total > i*mx.ticks && int64(left) < total-i {
			out = append(out, null[:]...)
			continue
		}
		q := &content[next]
		next++
		if q.pcr {
			mpegts.SetPCR(&q.pkt, segStart*300+i*mx.ticks*300/total)
		}
		if q.video {
			mpegts.SetCC(&q.pkt, ccVideo)
			ccVideo++
		} else {
			mpegts.SetCC(&q.pkt, ccAudio)
			ccAudio++
		}
		out = append(out, q.pkt[:]...)
	}
	return out, nil
}

// padTo16 adds packets to units until their total is a multiple of 16, one per unit in
// turn, as long as a unit has bytes to spare (every packet must carry one).
func padTo16(units []*unit) error {
	total := 0
	for _, u := range units {
		total += u.packets
	}
	extra := roundUp16(total) - total
	for extra > 0 {
		added := false
		for _, u := range units {
			if extra > 0 && u.packets < len(u.pes) {
				u.packets++
				extra--
				added = true
			}
		}
		if !added {
			return fmt.Errorf("cannot spread %d PES packets over a multiple of 16 transport packets", len(units))
		}
	}
	return nil
}

// segment is a built segment, ready to serve.
type segment struct {
	seq       int64
	published time.Time
	*response
}

// segmentCache keeps the segments a client may still request (2·window+1 of them) for
// one rendition, in a ring indexed by sequence number. Each slot builds its segment at
// most once per sequence number: concurrent first requests wait for one build.
type segmentCache struct {
	slots []segmentSlot
}

type segmentSlot struct {
	cur atomic.Pointer[segment] // the segment this slot holds (read without locking)
	mu  sync.Mutex              // serialises builds into this slot
}

func newSegmentCache(window int) *segmentCache {
	// 2·window+1 segments are available at any instant; one more slot lets the next
	// segment be built while the oldest is still served.
	return &segmentCache{slots: make([]segmentSlot, 2*window+2)}
}

// get returns segment n, building it with build on the first request. built reports
// whether this call did the build.
func (c *segmentCache) get(n int64, build func(int64) (*segment, error)) (seg *segment, built bool, err error) {
	slot := &c.slots[n%int64(len(c.slots))]
	if s := slot.cur.Load(); s != nil && s.seq == n {
		return s, false, nil
	}
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if s := slot.cur.Load(); s != nil && s.seq == n {
		return s, false, nil
	}
	s, err := build(n)
	if err != nil {
		return nil, false, err
	}
	slot.cur.Store(s)
	return s, true, nil
}
