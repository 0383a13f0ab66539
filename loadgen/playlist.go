package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// playlist is one parse of an m3u8 file (RFC 8216), either a multivariant playlist
// (variants) or a media playlist (segments). Every []byte points into the body that was
// parsed: a viewer copies the few fields it keeps (new segments' URIs, the variants once)
// and returns both the body and the playlist to their pools, so no parsed playlist outlives
// the callback that loaded it.
type playlist struct {
	multivariant bool
	variants     []variantRef

	targetDuration time.Duration
	mediaSequence  int64
	endList        bool
	mapURI         []byte // EXT-X-MAP URI (fMP4 init segment), nil when absent
	segments       []segmentRef
}

// variantRef is one EXT-X-STREAM-INF entry.
type variantRef struct {
	bandwidth int64 // bits per second, the BANDWIDTH attribute (RFC 8216 §4.3.4.2)
	uri       []byte
}

// segmentRef is one media segment.
type segmentRef struct {
	uri      []byte
	duration time.Duration
	// pdt is the segment's EXT-X-PROGRAM-DATE-TIME, given or derived from an earlier
	// segment's date plus the durations between (RFC 8216 §4.3.2.6); zero when unknown.
	pdt time.Time
}

func (p *playlist) reset() {
	p.multivariant = false
	p.variants = p.variants[:0]
	p.targetDuration = 0
	p.mediaSequence = 0
	p.endList = false
	p.mapURI = nil
	p.segments = p.segments[:0]
}

// errNotPlaylist and friends are wrapped with the line number where parsing stopped.
var (
	errNoHeader    = errors.New("first line is not #EXTM3U")
	errMixed       = errors.New("both EXT-X-STREAM-INF and EXTINF: neither a multivariant nor a media playlist")
	errEmpty       = errors.New("no EXT-X-STREAM-INF, EXTINF or EXT-X-TARGETDURATION")
	errNoTarget    = errors.New("media playlist without EXT-X-TARGETDURATION")
	errByteRange   = errors.New("EXT-X-BYTERANGE segments are not supported by the simulated player")
	errMissingURI  = errors.New("tag not followed by a URI line")
	errBadDuration = errors.New("bad duration")
)

// maxTargetDuration bounds EXT-X-TARGETDURATION; a larger value is taken as malformed
// rather than a reason to stop reloading for hours.
const maxTargetDuration = time.Hour

// parsePlaylist parses body into p (which it resets first). It accepts what RFC 8216
// requires of a playlist and what real players tolerate (CRLF line ends, comments,
// unknown tags, blank lines); anything it cannot play is an error that names the line,
// which the viewer records as the "malformed" class. It never panics (FuzzParsePlaylist).
func parsePlaylist(body []byte, p *playlist) error {
	p.reset()
	var (
		lineNo      int
		sawHeader   bool
		pendingInf  bool // an EXTINF waits for its URI line
		pendingStr  bool // an EXT-X-STREAM-INF waits for its URI line
		infDuration time.Duration
		strBW       int64
		nextPDT     time.Time // from an EXT-X-PROGRAM-DATE-TIME for the next segment
		sawTarget   bool
		sawInf      bool
	)
	rest := body
	for len(rest) > 0 {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		lineNo++
		line = bytes.TrimRight(line, "\r")
		line = bytes.TrimSpace(line)
		if !sawHeader {
			// RFC 8216 §4.3.1.1: the first line MUST be #EXTM3U (a UTF-8 BOM is tolerated).
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
			if !bytes.Equal(line, []byte("#EXTM3U")) {
				return fmt.Errorf("line %d: %w", lineNo, errNoHeader)
			}
			sawHeader = true
			continue
		}
		if len(line) == 0 {
			continue
		}
		if line[0] != '#' {
			// A URI line.
			switch {
			case pendingInf:
				seg := segmentRef{uri: line, duration: infDuration}
				if !nextPDT.IsZero() {
					seg.pdt = nextPDT
				} else if n := len(p.segments); n > 0 && !p.segments[n-1].pdt.IsZero() {
					prev := p.segments[n-1]
					seg.pdt = prev.pdt.Add(prev.duration)
				}
				p.segments = append(p.segments, seg)
				pendingInf = false
				nextPDT = time.Time{}
			case pendingStr:
				p.variants = append(p.variants, variantRef{bandwidth: strBW, uri: line})
				pendingStr = false
			default:
				return fmt.Errorf("line %d: URI %q without EXTINF or EXT-X-STREAM-INF", lineNo, clip(line))
			}
			continue
		}
		if !bytes.HasPrefix(line, []byte("#EXT")) {
			continue // a comment (RFC 8216 §4.1)
		}
		if pendingStr {
			return fmt.Errorf("line %d: EXT-X-STREAM-INF: %w", lineNo, errMissingURI)
		}
		tag, value, _ := bytes.Cut(line, []byte(":"))
		switch string(tag) { // string(tag) in a switch does not allocate
		case "#EXTINF":
			if pendingInf {
				return fmt.Errorf("line %d: EXTINF: %w", lineNo, errMissingURI)
			}
			durText, _, _ := bytes.Cut(value, []byte(","))
			d, ok := parseDecimalSeconds(durText)
			if !ok {
				return fmt.Errorf("line %d: EXTINF %q: %w", lineNo, clip(durText), errBadDuration)
			}
			infDuration = d
			pendingInf = true
			sawInf = true
		case "#EXT-X-TARGETDURATION":
			d, ok := parseDecimalSeconds(value)
			if !ok || d <= 0 || d > maxTargetDuration {
				return fmt.Errorf("line %d: EXT-X-TARGETDURATION %q: %w", lineNo, clip(value), errBadDuration)
			}
			p.targetDuration = d
			sawTarget = true
		case "#EXT-X-MEDIA-SEQUENCE":
			n, ok := parseInt(value)
			if !ok {
				return fmt.Errorf("line %d: EXT-X-MEDIA-SEQUENCE %q is not a decimal integer", lineNo, clip(value))
			}
			p.mediaSequence = n
		case "#EXT-X-PROGRAM-DATE-TIME":
			t, ok := parseDateTime(value)
			if !ok {
				return fmt.Errorf("line %d: EXT-X-PROGRAM-DATE-TIME %q is not an ISO 8601 date-time", lineNo, clip(value))
			}
			nextPDT = t
		case "#EXT-X-ENDLIST":
			p.endList = true
		case "#EXT-X-BYTERANGE":
			return fmt.Errorf("line %d: %w", lineNo, errByteRange)
		case "#EXT-X-MAP":
			uri, ok := attr(value, "URI")
			if !ok || len(uri) == 0 {
				return fmt.Errorf("line %d: EXT-X-MAP without URI", lineNo)
			}
			if bytes.Contains(value, []byte("BYTERANGE=")) {
				return fmt.Errorf("line %d: %w", lineNo, errByteRange)
			}
			p.mapURI = uri
		case "#EXT-X-STREAM-INF":
			bw, ok := attr(value, "BANDWIDTH")
			if !ok {
				return fmt.Errorf("line %d: EXT-X-STREAM-INF without BANDWIDTH", lineNo)
			}
			n, ok := parseInt(bw)
			if !ok || n <= 0 {
				return fmt.Errorf("line %d: EXT-X-STREAM-INF BANDWIDTH %q is not a positive integer", lineNo, clip(bw))
			}
			strBW = n
			pendingStr = true
			p.multivariant = true
		}
	}
	switch {
	case pendingInf:
		return fmt.Errorf("line %d: EXTINF: %w", lineNo, errMissingURI)
	case pendingStr:
		return fmt.Errorf("line %d: EXT-X-STREAM-INF: %w", lineNo, errMissingURI)
	case !sawHeader:
		return fmt.Errorf("line %d: %w", lineNo, errNoHeader)
	case p.multivariant && sawInf:
		return errMixed
	case p.multivariant:
		return nil
	case !sawTarget && !sawInf:
		return errEmpty
	case !sawTarget:
		return errNoTarget
	}
	return nil
}

// clip keeps error messages short when a hostile playlist has megabyte-long lines.
func clip(b []byte) string {
	const n = 40
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// attr returns the value of attribute name in an RFC 8216 §4.2 attribute list, without
// the quotes of a quoted string. Names are matched whole, so BANDWIDTH does not match
// AVERAGE-BANDWIDTH.
func attr(list []byte, name string) ([]byte, bool) {
	for len(list) > 0 {
		eq := bytes.IndexByte(list, '=')
		if eq < 0 {
			return nil, false
		}
		key := bytes.TrimSpace(list[:eq])
		list = list[eq+1:]
		var val []byte
		if len(list) > 0 && list[0] == '"' {
			end := bytes.IndexByte(list[1:], '"')
			if end < 0 {
				return nil, false
			}
			val = list[1 : 1+end]
			list = list[2+end:]
			if i := bytes.IndexByte(list, ','); i >= 0 {
				list = list[i+1:]
			} else {
				list = nil
			}
		} else if i := bytes.IndexByte(list, ','); i >= 0 {
			val, list = list[:i], list[i+1:]
		} else {
			val, list = list, nil
		}
		if string(key) == name {
			return bytes.TrimSpace(val), true
		}
	}
	return nil, false
}

// parseInt parses an RFC 8216 decimal-integer (0 to 2^64-1; here up to 2^63-1).
func parseInt(b []byte) (int64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseDecimalSeconds parses a decimal-floating-point number of seconds (RFC 8216 §4.2,
// "digits, optionally a point and digits") into a Duration, to the nanosecond. Values up
// to a day are accepted; a media segment or a target duration longer than that is
// malformed input, not a stream.
func parseDecimalSeconds(b []byte) (time.Duration, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0, false
	}
	var secs int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		secs = secs*10 + int64(b[i]-'0')
		if secs > 86400 {
			return 0, false
		}
	}
	if i == 0 {
		return 0, false
	}
	d := time.Duration(secs) * time.Second
	if i == len(b) {
		return d, true
	}
	if b[i] != '.' {
		return 0, false
	}
	i++
	scale := int64(time.Second / 10)
	start := i
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d += time.Duration(int64(b[i]-'0') * scale)
		scale /= 10
	}
	if i != len(b) || i == start {
		return 0, false
	}
	return d, true
}

// parseDateTime parses an ISO 8601 date-time as EXT-X-PROGRAM-DATE-TIME carries it
// (RFC 8216 §4.3.2.6, RFC 3339 profile): YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm|±hhmm).
// Hand-written so that the per-reload parse allocates nothing.
func parseDateTime(b []byte) (time.Time, bool) {
	b = bytes.TrimSpace(b)
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, len(s) > 0
	}
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		rest = rest[1:]
		scale := int(time.Second / 10)
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			nsec += int(rest[n]-'0') * scale
			scale /= 10
			n++
		}
		if n == 0 {
			return time.Time{}, false
		}
		rest = rest[n:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':',
		len(rest) == 5 && (rest[0] == '+' || rest[0] == '-'):
		hh, ok := num(rest[1:3])
		mmText := rest[3:]
		if mmText[0] == ':' {
			mmText = mmText[1:]
		}
		mm, ok2 := num(mmText)
		if !ok || !ok2 || hh > 23 || mm > 59 {
			return time.Time{}, false
		}
		offset = hh*3600 + mm*60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}
