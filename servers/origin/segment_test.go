package origin

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/servers/origin/mpegts"
)

// streamCheck follows consecutive segments as a player's demuxer would and checks what
// makes playback continuous.
type streamCheck struct {
	t        testing.TB
	c        mpegts.Checker
	lastPTS  map[uint16]int64 // last PTS per PID, unwrapped
	lastPCR  int64            // last PCR (unwrapped) and its absolute packet index
	lastPCRi int64
	pcrRate  float64 // 27 MHz ticks per packet, from the first two PCRs
	packets  int64
	pmtPID   uint16
}

func newStreamCheck(t testing.TB) *streamCheck {
	return &streamCheck{t: t, lastPTS: map[uint16]int64{}, lastPCR: -1}
}

// segment checks one segment of want bytes that should start with the GOP's IDR.
func (sc *streamCheck) segment(name string, seg []byte, want int) {
	t := sc.t
	t.Helper()
	if len(seg) != want {
		t.Fatalf("%s: %d bytes, want %d", name, len(seg), want)
	}
	if len(seg)%mpegts.PacketSize != 0 {
		t.Fatalf("%s: %d bytes is not whole packets", name, len(seg))
	}
	sawIDR := false
	for i := 0; i < len(seg); i += mpegts.PacketSize {
		p := seg[i : i+mpegts.PacketSize]
		if err := sc.c.Check(p); err != nil {
			t.Fatalf("%s packet %d: %v", name, i/mpegts.PacketSize, err)
		}
		h, _ := mpegts.Parse(p)
		idx := int64(i / mpegts.PacketSize)
		switch {
		case idx == 0:
			if h.PID != mpegts.PIDPAT {
				t.Fatalf("%s does not start with a PAT", name)
			}
			pat, err := mpegts.ParsePSI(h.Payload)
			if err != nil {
				t.Fatalf("%s PAT: %v", name, err)
			}
			sc.pmtPID = pat.Programs[programNumber]
		case idx == 1:
			pmt, err := mpegts.ParsePSI(h.Payload)
			if h.PID != sc.pmtPID || err != nil || len(pmt.Streams) != 2 || pmt.PCRPID != videoPID {
				t.Fatalf("%s: second packet is not the PMT (%v, %+v)", name, err, pmt)
			}
		}
		if h.PCR >= 0 {
			abs := sc.packets + idx
			pcr := h.PCR
			if sc.lastPCR >= 0 {
				for pcr < sc.lastPCR-mpegts.PCRWrap/2 {
					pcr += mpegts.PCRWrap
				}
				gap := pcr - sc.lastPCR
				if gap > mpegts.PCRHz/10 {
					t.Fatalf("%s: %v between PCRs, more than 100 ms", name, time.Duration(gap)*time.Second/mpegts.PCRHz)
				}
				rate := float64(gap) / float64(abs-sc.lastPCRi)
				if sc.pcrRate == 0 {
					sc.pcrRate = rate
				} else if d := rate - sc.pcrRate; d > 1 || d < -1 { // within a tick per packet of rounding
					t.Fatalf("%s: PCR rate %.2f ticks/packet, stream started at %.2f: not constant", name, rate, sc.pcrRate)
				}
			}
			sc.lastPCR, sc.lastPCRi = pcr, abs
		}
		if h.PUSI && (h.PID == videoPID || h.PID == audioPID) {
			pes, err := mpegts.ParsePES(h.Payload)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			step := int64(audioTicks)
			if h.PID == videoPID {
				step = videoTicks
				if !sawIDR {
					es := h.Payload[pes.HeaderLen:]
					if !h.RandomAccess || !bytes.Contains(es, []byte{0, 0, 1, 0x65}) {
						t.Fatalf("%s: first video frame is not a flagged IDR", name)
					}
					sawIDR = true
				}
			}
			pts := pes.PTS
			if last, ok := sc.lastPTS[h.PID]; ok {
				for pts < last-mpegts.TimestampWrap/2 {
					pts += mpegts.TimestampWrap
				}
				if pts-last != step {
					t.Fatalf("%s: PID 0x%x PTS moved %d, want %d (a gap or a repeat)", name, h.PID, pts-last, step)
				}
			}
			sc.lastPTS[h.PID] = pts
			// The frame must arrive before it is shown: its PTS is ahead of the PCR at
			// its first packet, by at most a second.
			if sc.lastPCR >= 0 && h.PID == videoPID {
				ahead := pts*300 - sc.lastPCR
				if ahead <= 0 || ahead > mpegts.PCRHz {
					t.Fatalf("%s: frame shown %v after it arrives, want (0, 1s]", name, time.Duration(ahead)*time.Second/mpegts.PCRHz)
				}
			}
		}
	}
	if !sawIDR {
		t.Fatalf("%s: no video", name)
	}
	sc.packets += int64(len(seg) / mpegts.PacketSize)
}

// TestSegmentsAreContinuous builds runs of consecutive segments and checks them as one
// stream: exact size, PAT/PMT and an IDR first in each, continuity counters, PCR and
// PTS running on across every boundary without gaps (including across the 33-bit wrap).
func TestSegmentsAreContinuous(t *testing.T) {
	for _, tc := range []struct {
		name    string
		d       time.Duration
		bitrate int64
		window  int
		from    int64 // first segment
		count   int
	}{
		{"defaults from the start", 2 * time.Second, 500_000, 6, 0, 12},
		{"1.5 s segments: frame counts alternate", 1500 * time.Millisecond, 500_000, 6, 7, 12},
		{"sub-second segments at a high rate", 300 * time.Millisecond, 3_000_000, 10, 0, 40},
		{"6 s segments loop the GOP inside a segment", 6 * time.Second, 300_000, 6, 3, 5},
		{"odd duration: no frame or audio alignment", 2345 * time.Millisecond, 500_000, 6, 100, 10},
		{"across the 33-bit PTS wrap (26.5 h)", 2 * time.Second, 500_000, 6, (1<<33)/180_000 - 5, 12},
		{"a year in", 2 * time.Second, 500_000, 6, 15_768_000, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, Config{SegmentDuration: tc.d, Bitrate: tc.bitrate, Window: tc.window, Epoch: testEpoch})
			r := s.live.renditions[0]
			want := int(ceilDiv(tc.bitrate*tc.d.Milliseconds(), 1504*1000)) * mpegts.PacketSize
			sc := newStreamCheck(t)
			for n := tc.from; n < tc.from+int64(tc.count); n++ {
				data, err := s.live.mx.build(n, r.packets)
				if err != nil {
					t.Fatal(err)
				}
				sc.segment(fmt.Sprintf("segment %d", n), data, want)
			}
		})
	}
}

func TestSegmentsAreDeterministic(t *testing.T) {
	a := newTestServer(t, Config{Epoch: testEpoch})
	b := newTestServer(t, Config{Epoch: testEpoch.Add(time.Hour)}) // epoch does not matter to the bytes
	for _, n := range []int64{0, 1, 77, 123456} {
		x, _ := a.live.mx.build(n, a.live.renditions[0].packets)
		y, _ := b.live.mx.build(n, b.live.renditions[0].packets)
		if !bytes.Equal(x, y) {
			t.Fatalf("segment %d differs between two origins with the same settings", n)
		}
	}
}

func TestRenditionsDifferOnlyInPadding(t *testing.T) {
	s := newTestServer(t, Config{Renditions: 3, Epoch: testEpoch})
	var names []string
	for _, r := range s.live.renditions {
		names = append(names, r.name)
		data, err := s.live.mx.build(42, r.packets)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := int64(len(data))*8*1000/2000, r.bitrate; got < want || got > want+1504/2 {
			t.Fatalf("%s: segment carries %d bits/s, want %d", r.name, got, want)
		}
		sc := newStreamCheck(t)
		sc.segment(r.name, data, len(data))
	}
	if got := strings.Join(names, ","); got != "500k,1500k,3000k" {
		t.Fatalf("ladder %s, want 500k,1500k,3000k", got)
	}
}

// TestSegmentBuiltOnce fires many concurrent first requests for one segment: it is
// built once and every request gets the same bytes.
func TestSegmentBuiltOnce(t *testing.T) {
	s, fc := fakeServer(t, Config{})
	fc.Set(testEpoch.Add(time.Minute))
	h := s.Handler()
	var wg sync.WaitGroup
	bodies := make([][]byte, 64)
	for i := range bodies {
		wg.Go(func() {
			w := get(h, "GET", "/live/500k/20.ts")
			if w.Code == 200 {
				bodies[i] = w.Body.Bytes()
			}
		})
	}
	wg.Wait()
	for i := range bodies {
		if bodies[i] == nil || !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("request %d got different bytes", i)
		}
	}
	if got := counterValue(t, s, MetricSegmentsBuilt, "rendition", "500k"); got != 1 {
		t.Fatalf("segment built %v times for 64 requests, want 1", got)
	}
	get(h, "GET", "/live/500k/21.ts")
	if got := counterValue(t, s, MetricSegmentsBuilt, "rendition", "500k"); got != 2 {
		t.Fatalf("after a second segment: built %v, want 2", got)
	}
}

func TestMediaMatchesItsDescription(t *testing.T) {
	m, err := embeddedMedia()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.video) != 2*mediaFPS {
		t.Errorf("GOP of %d frames, want %d (2 s)", len(m.video), 2*mediaFPS)
	}
	if m.codecs != "avc1.42c00d,mp4a.40.2" {
		t.Errorf("codecs %q", m.codecs)
	}
	if len(m.audio) < 50 {
		t.Errorf("only %d audio frames", len(m.audio))
	}
	if _, err := parseMedia([]byte{0, 0, 1, 0x65, 1}, toneAAC); err == nil {
		t.Error("parseMedia accepted video without an SPS")
	}
	if _, err := parseMedia(gopH264, []byte{0xFF, 0xF1, 0, 0}); err == nil {
		t.Error("parseMedia accepted a truncated ADTS frame")
	}
}
