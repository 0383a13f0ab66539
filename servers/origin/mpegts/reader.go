package mpegts

import (
	"errors"
	"fmt"
)

// Header is a parsed transport packet.
type Header struct {
	PID           uint16
	PUSI          bool // payload_unit_start_indicator: a PES or PSI section starts here
	CC            uint8
	HasPayload    bool
	Discontinuity bool  // discontinuity_indicator in the adaptation field
	RandomAccess  bool  // random_access_indicator in the adaptation field
	PCR           int64 // 27 MHz units; -1 when the packet carries none
	Payload       []byte
}

// Parse reads one 188-byte transport packet.
func Parse(p []byte) (Header, error) {
	h := Header{PCR: -1}
	if len(p) != PacketSize {
		return h, fmt.Errorf("mpegts: packet of %d bytes, want %d", len(p), PacketSize)
	}
	if p[0] != SyncByte {
		return h, fmt.Errorf("mpegts: sync byte 0x%02x, want 0x47", p[0])
	}
	if p[1]&0x80 != 0 {
		return h, errors.New("mpegts: transport_error_indicator set")
	}
	h.PUSI = p[1]&0x40 != 0
	h.PID = uint16(p[1]&0x1F)<<8 | uint16(p[2])
	afc := p[3] >> 4 & 0x3
	h.CC = p[3] & 0x0F
	if afc == 0 {
		return h, errors.New("mpegts: reserved adaptation_field_control 00")
	}
	i := headerSize
	if afc&0x2 != 0 {
		afLen := int(p[i])
		i++
		if i+afLen > PacketSize || (afc == 0x3 && i+afLen == PacketSize) {
			return h, fmt.Errorf("mpegts: adaptation field of %d bytes overruns the packet", afLen)
		}
		if afLen > 0 {
			flags := p[i]
			h.Discontinuity = flags&0x80 != 0
			h.RandomAccess = flags&0x40 != 0
			if flags&0x10 != 0 {
				if afLen < 7 {
					return h, errors.New("mpegts: PCR flag set in a short adaptation field")
				}
				b := p[i+1 : i+7]
				base := int64(b[0])<<25 | int64(b[1])<<17 | int64(b[2])<<9 | int64(b[3])<<1 | int64(b[4]>>7)
				ext := int64(b[4]&1)<<8 | int64(b[5])
				h.PCR = base*300 + ext
			}
		}
		i += afLen
	}
	if afc&0x1 != 0 {
		h.HasPayload = true
		h.Payload = p[i:]
	}
	return h, nil
}

// PES is a parsed PES header.
type PES struct {
	StreamID  byte
	Length    int   // PES_packet_length (0: unbounded)
	PTS, DTS  int64 // 90 kHz; -1 when absent (DTS equals PTS when only PTS is sent)
	HeaderLen int   // bytes before the elementary stream data
}

// ParsePES reads the PES header at the start of b (the payload of a PUSI packet).
func ParsePES(b []byte) (PES, error) {
	pes := PES{PTS: -1, DTS: -1}
	if len(b) < 9 || b[0] != 0 || b[1] != 0 || b[2] != 1 {
		return pes, errors.New("mpegts: no PES start code")
	}
	pes.StreamID = b[3]
	pes.Length = int(b[4])<<8 | int(b[5])
	if b[6]&0xC0 != 0x80 {
		return pes, errors.New("mpegts: PES header marker bits are not '10'")
	}
	flags := b[7] >> 6
	hdr := int(b[8])
	pes.HeaderLen = 9 + hdr
	if len(b) < pes.HeaderLen {
		return pes, fmt.Errorf("mpegts: PES header of %d bytes overruns the payload", pes.HeaderLen)
	}
	opt := b[9:pes.HeaderLen]
	switch flags {
	case 0x2:
		if len(opt) < 5 {
			return pes, errors.New("mpegts: PES header too short for a PTS")
		}
		pes.PTS = readTS(opt)
		pes.DTS = pes.PTS
	case 0x3:
		if len(opt) < 10 {
			return pes, errors.New("mpegts: PES header too short for PTS and DTS")
		}
		pes.PTS = readTS(opt)
		pes.DTS = readTS(opt[5:])
	case 0x1:
		return pes, errors.New("mpegts: forbidden PTS_DTS_flags 01")
	}
	return pes, nil
}

func readTS(b []byte) int64 {
	return int64(b[0]>>1&0x7)<<30 | int64(b[1])<<22 | int64(b[2]>>1)<<15 | int64(b[3])<<7 | int64(b[4]>>1)
}

// Section is a parsed single-section PAT or PMT.
type Section struct {
	TableID byte
	IDExt   uint16 // transport_stream_id (PAT) or program_number (PMT)
	// PAT: program number -> PMT PID.
	Programs map[uint16]uint16
	// PMT: the PCR PID and the elementary streams.
	PCRPID  uint16
	Streams []Stream
}

// ParsePSI reads the PAT or PMT section at the start of a PUSI packet's payload and
// checks its CRC.
func ParsePSI(payload []byte) (Section, error) {
	var s Section
	if len(payload) < 1 {
		return s, errors.New("mpegts: empty PSI payload")
	}
	ptr := int(payload[0])
	if 1+ptr+3 > len(payload) {
		return s, errors.New("mpegts: PSI pointer_field overruns the payload")
	}
	sec := payload[1+ptr:]
	s.TableID = sec[0]
	length := int(sec[1]&0x0F)<<8 | int(sec[2])
	if length < 9 || 3+length > len(sec) {
		return s, fmt.Errorf("mpegts: PSI section_length %d out of range", length)
	}
	sec = sec[:3+length]
	if CRC32(sec) != 0 {
		return s, errors.New("mpegts: PSI CRC mismatch")
	}
	s.IDExt = uint16(sec[3])<<8 | uint16(sec[4])
	body := sec[8 : len(sec)-4]
	switch s.TableID {
	case 0x00:
		if len(body)%4 != 0 {
			return s, errors.New("mpegts: PAT body is not whole entries")
		}
		s.Programs = map[uint16]uint16{}
		for ; len(body) >= 4; body = body[4:] {
			s.Programs[uint16(body[0])<<8|uint16(body[1])] = uint16(body[2]&0x1F)<<8 | uint16(body[3])
		}
	case 0x02:
		if len(body) < 4 {
			return s, errors.New("mpegts: PMT too short")
		}
		s.PCRPID = uint16(body[0]&0x1F)<<8 | uint16(body[1])
		info := int(body[2]&0x0F)<<8 | int(body[3])
		if 4+info > len(body) {
			return s, errors.New("mpegts: PMT program_info overruns the section")
		}
		for es := body[4+info:]; len(es) > 0; {
			if len(es) < 5 {
				return s, errors.New("mpegts: PMT stream entry truncated")
			}
			esInfo := int(es[3]&0x0F)<<8 | int(es[4])
			if 5+esInfo > len(es) {
				return s, errors.New("mpegts: PMT ES_info overruns the section")
			}
			s.Streams = append(s.Streams, Stream{Type: es[0], PID: uint16(es[1]&0x1F)<<8 | uint16(es[2])})
			es = es[5+esInfo:]
		}
	default:
		return s, fmt.Errorf("mpegts: table_id 0x%02x is neither PAT nor PMT", s.TableID)
	}
	return s, nil
}

// Checker follows a transport stream packet by packet, across segment boundaries, and
// reports what would make a player glitch: a continuity counter that skips, a PCR that
// goes backwards, a PTS that goes backwards on a PID. The zero value is ready to use.
type Checker struct {
	cc      map[uint16]uint8 // last continuity counter per PID (payload packets only)
	lastPCR int64            // last PCR seen (27 MHz, unwrapped), 0 before the first
	pcrSeen bool
	lastPTS map[uint16]int64 // last PTS per PID (unwrapped)
	// Counts of what was seen, for callers' sanity checks.
	Packets, PESs, PCRs int
}

// Check consumes one packet.
func (c *Checker) Check(p []byte) error {
	h, err := Parse(p)
	if err != nil {
		return err
	}
	c.Packets++
	if h.PID == PIDNull {
		return nil
	}
	if c.cc == nil {
		c.cc = map[uint16]uint8{}
		c.lastPTS = map[uint16]int64{}
	}
	if h.PCR >= 0 {
		c.PCRs++
		pcr := unwrap(h.PCR, c.lastPCR, PCRWrap)
		if c.pcrSeen && pcr <= c.lastPCR {
			return fmt.Errorf("mpegts: PCR went from %d to %d on PID 0x%x", c.lastPCR, pcr, h.PID)
		}
		c.lastPCR, c.pcrSeen = pcr, true
	}
	if !h.HasPayload {
		return nil
	}
	if last, ok := c.cc[h.PID]; ok && !h.Discontinuity && h.CC != (last+1)&0x0F {
		return fmt.Errorf("mpegts: continuity counter on PID 0x%x went from %d to %d", h.PID, last, h.CC)
	}
	c.cc[h.PID] = h.CC
	if h.PUSI && h.PID != PIDPAT && len(h.Payload) >= 3 && h.Payload[0] == 0 && h.Payload[1] == 0 && h.Payload[2] == 1 {
		pes, err := ParsePES(h.Payload)
		if err != nil {
			return err
		}
		c.PESs++
		if pes.PTS >= 0 {
			last, seen := c.lastPTS[h.PID]
			pts := unwrap(pes.PTS, last, TimestampWrap)
			if seen && pts <= last {
				return fmt.Errorf("mpegts: PTS on PID 0x%x went from %d to %d", h.PID, last, pts)
			}
			c.lastPTS[h.PID] = pts
		}
	}
	return nil
}

// unwrap returns the value congruent to v modulo wrap that is nearest to ref.
func unwrap(v, ref, wrap int64) int64 {
	base := ref - ref%wrap
	best := base + v
	for _, cand := range []int64{base + v - wrap, base + v + wrap} {
		if abs(cand-ref) < abs(best-ref) {
			best = cand
		}
	}
	return best
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
