package origin

import (
	_ "embed"
	"errors"
	"fmt"
	"sync"
)

// The embedded media (see media/make.sh for how it was made).
var (
	//go:embed media/gop.h264
	gopH264 []byte
	//go:embed media/tone.aac
	toneAAC []byte
)

// Properties of the embedded media, as media/make.sh encodes it (a test checks them
// against ffprobe).
const (
	mediaWidth     = 256
	mediaHeight    = 144
	mediaFPS       = 25
	videoTicks     = 90_000 / mediaFPS // one frame in 90 kHz ticks: 3600
	audioRate      = 48_000
	audioFrameSize = 1024                                // samples per AAC frame
	audioTicks     = 90_000 * audioFrameSize / audioRate // one AAC frame in 90 kHz ticks: 1920
)

// media is the embedded GOP split into access units and the tone split into ADTS frames.
type media struct {
	// video holds Annex B access units. Unit 0 is AUD + SPS + PPS + IDR; the rest are
	// P pictures without B-frames, so any prefix of the GOP decodes.
	video [][]byte
	// audio holds ADTS frames (header included).
	audio [][]byte
	// codecs is the RFC 6381 CODECS attribute: "avc1.PPCCLL,mp4a.40.2".
	codecs string
}

var (
	mediaOnce   sync.Once
	loadedMedia *media
	mediaErr    error
)

// embeddedMedia parses the embedded files once.
func embeddedMedia() (*media, error) {
	mediaOnce.Do(func() { loadedMedia, mediaErr = parseMedia(gopH264, toneAAC) })
	return loadedMedia, mediaErr
}

func parseMedia(h264, aac []byte) (*media, error) {
	m := &media{}
	var err error
	var sps []byte
	if m.video, sps, err = splitAccessUnits(h264); err != nil {
		return nil, fmt.Errorf("origin: embedded video: %w", err)
	}
	if m.audio, err = splitADTS(aac); err != nil {
		return nil, fmt.Errorf("origin: embedded audio: %w", err)
	}
	// avc1 + profile_idc, constraint flags, level_idc from the SPS.
	m.codecs = fmt.Sprintf("avc1.%02x%02x%02x,mp4a.40.2", sps[1], sps[2], sps[3])
	return m, nil
}

// splitAccessUnits splits an Annex B stream at its access unit delimiters (NAL type 9)
// and checks that it is one GOP: SPS, PPS and an IDR in the first unit, no IDR after. It
// returns the units and the SPS NAL unit.
func splitAccessUnits(b []byte) (units [][]byte, sps []byte, err error) {
	type nal struct{ start, body int } // start code offset, first byte after it
	var nals []nal
	for i := 0; i+3 <= len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			start := i
			if i > 0 && b[i-1] == 0 {
				start = i - 1 // four-byte start code
			}
			nals = append(nals, nal{start, i + 3})
			i += 3
			continue
		}
		i++
	}
	if len(nals) == 0 || nals[0].start != 0 {
		return nil, nil, errors.New("not an Annex B stream")
	}
	auStart := -1
	idrs := 0
	for k, n := range nals {
		if n.body >= len(b) {
			return nil, nil, errors.New("empty NAL unit at the end")
		}
		end := len(b)
		if k+1 < len(nals) {
			end = nals[k+1].start
		}
		switch b[n.body] & 0x1F {
		case 9: // access unit delimiter: a new access unit begins
			if auStart >= 0 {
				units = append(units, b[auStart:n.start])
			}
			auStart = n.start
		case 7:
			if len(units) == 0 && sps == nil {
				sps = b[n.body:end]
			}
		case 5:
			if len(units) > 0 {
				return nil, nil, errors.New("an IDR after the first access unit: not a single GOP")
			}
			idrs++
		}
	}
	if auStart < 0 {
		return nil, nil, errors.New("no access unit delimiters")
	}
	units = append(units, b[auStart:])
	if idrs == 0 || len(sps) < 4 {
		return nil, nil, errors.New("the first access unit lacks an SPS or an IDR")
	}
	return units, sps, nil
}

// splitADTS splits an ADTS stream into frames and checks it is AAC-LC, 48 kHz, mono.
func splitADTS(b []byte) ([][]byte, error) {
	var frames [][]byte
	for len(b) > 0 {
		if len(b) < 7 || b[0] != 0xFF || b[1]&0xF0 != 0xF0 {
			return nil, fmt.Errorf("no ADTS sync word at frame %d", len(frames))
		}
		profile := b[2] >> 6        // audio object type - 1
		rate := b[2] >> 2 & 0x0F    // sampling frequency index
		ch := (b[2]&1)<<2 | b[3]>>6 // channel configuration
		size := int(b[3]&0x03)<<11 | int(b[4])<<3 | int(b[5])>>5
		if profile != 1 || rate != 3 || ch != 1 {
			return nil, fmt.Errorf("frame %d is not AAC-LC 48 kHz mono", len(frames))
		}
		if size < 7 || size > len(b) {
			return nil, fmt.Errorf("frame %d: bad length %d", len(frames), size)
		}
		frames = append(frames, b[:size])
		b = b[size:]
	}
	if len(frames) == 0 {
		return nil, errors.New("no ADTS frames")
	}
	return frames, nil
}
