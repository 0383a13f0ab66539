// Package mpegts writes and reads the part of MPEG-2 transport streams (ISO/IEC 13818-1)
// that HLS segments use: a PAT and PMT for one program, PES packets carrying H.264 and
// AAC with a PTS, the PCR in adaptation fields, and null packets for padding. The writer
// is what the origin builds segments with; the reader (Parse, ParsePES, ParsePSI,
// Checker) is what tests and tools use to prove the output is continuous.
package mpegts

import (
	"errors"
	"fmt"
)

// Transport stream constants.
const (
	PacketSize = 188  // bytes in a transport packet
	SyncByte   = 0x47 // first byte of every packet
	headerSize = 4
	maxPayload = PacketSize - headerSize // 184

	PIDPAT  uint16 = 0x0000 // program association table
	PIDNull uint16 = 0x1FFF // null packets: padding, continuity counter ignored

	StreamTypeH264 byte = 0x1B // ITU-T H.264 video
	StreamTypeAAC  byte = 0x0F // ISO/IEC 13818-7 audio with ADTS framing

	StreamIDVideo byte = 0xE0 // PES stream_id of the first video stream
	StreamIDAudio byte = 0xC0 // PES stream_id of the first audio stream

	ClockHz = 90_000     // PTS, DTS and PCR base tick rate
	PCRHz   = 27_000_000 // PCR rate (base*300 + extension)
	// TimestampWrap is where 33-bit PTS/DTS/PCR-base values wrap (about 26.5 hours).
	TimestampWrap int64 = 1 << 33
	// PCRWrap is where a PCR in 27 MHz units wraps.
	PCRWrap = TimestampWrap * 300
)

// Packet is one transport packet.
type Packet [PacketSize]byte

// Stream is one elementary stream of the program, as listed in the PMT.
type Stream struct {
	Type byte   // stream_type
	PID  uint16 // elementary_PID
}

// PAT returns a program association table naming one program whose PMT is on pmtPID.
func PAT(program, pmtPID uint16, cc uint8) Packet {
	body := []byte{
		byte(program >> 8), byte(program),
		0xE0 | byte(pmtPID>>8&0x1F), byte(pmtPID),
	}
	return psi(PIDPAT, 0x00, 1, body, cc)
}

// PMT returns a program map table for program with its PCR on pcrPID.
func PMT(pmtPID, program, pcrPID uint16, streams []Stream, cc uint8) Packet {
	body := []byte{0xE0 | byte(pcrPID>>8&0x1F), byte(pcrPID), 0xF0, 0x00} // no program descriptors
	for _, s := range streams {
		body = append(body, s.Type, 0xE0|byte(s.PID>>8&0x1F), byte(s.PID), 0xF0, 0x00)
	}
	return psi(pmtPID, 0x02, program, body, cc)
}

// psi builds a single-packet PSI section: table_id, the long-form header with idExt
// (transport_stream_id or program_number), body, CRC-32; the rest is 0xFF stuffing.
func psi(pid uint16, tableID byte, idExt uint16, body []byte, cc uint8) Packet {
	var p Packet
	for i := range p {
		p[i] = 0xFF
	}
	writeHeader(&p, pid, true, 0x1, cc)
	sec := p[headerSize+1:] // after pointer_field
	p[headerSize] = 0       // pointer_field: section starts right away
	length := 5 + len(body) + 4
	sec[0] = tableID
	sec[1] = 0xB0 | byte(length>>8&0x0F) // section_syntax_indicator=1, '0', reserved '11'
	sec[2] = byte(length)
	sec[3], sec[4] = byte(idExt>>8), byte(idExt)
	sec[5] = 0xC1 // reserved '11', version 0, current_next_indicator 1
	sec[6], sec[7] = 0, 0
	n := 8 + copy(sec[8:], body)
	crc := CRC32(sec[:n])
	sec[n], sec[n+1], sec[n+2], sec[n+3] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	return p
}

// Null returns a null packet (PID 0x1FFF), used to pad a stream to a constant rate.
func Null() Packet {
	var p Packet
	for i := range p {
		p[i] = 0xFF
	}
	writeHeader(&p, PIDNull, false, 0x1, 0)
	return p
}

// writeHeader fills the 4-byte packet header; afc is adaptation_field_control.
func writeHeader(p *Packet, pid uint16, pusi bool, afc byte, cc uint8) {
	p[0] = SyncByte
	p[1] = byte(pid>>8) & 0x1F
	if pusi {
		p[1] |= 0x40
	}
	p[2] = byte(pid)
	p[3] = afc<<4 | cc&0x0F
}

// PESHeaderLen is the size of the PES header AppendPESHeader writes.
const PESHeaderLen = 14

// AppendPESHeader appends a PES header with a PTS for a payload of payloadLen bytes.
// Video PES packets get PES_packet_length 0 (unbounded, allowed for video only); other
// streams get their exact length, so payloadLen must then fit (at most 65527 bytes).
func AppendPESHeader(dst []byte, streamID byte, pts int64, payloadLen int) ([]byte, error) {
	length := 0
	if streamID&0xF0 != StreamIDVideo {
		length = PESHeaderLen - 6 + payloadLen
		if length > 0xFFFF {
			return dst, fmt.Errorf("mpegts: PES payload of %d bytes too long for stream 0x%02x", payloadLen, streamID)
		}
	}
	pts = wrapTS(pts)
	return append(dst,
		0x00, 0x00, 0x01, streamID,
		byte(length>>8), byte(length),
		0x84,                           // '10', not scrambled, data_alignment_indicator=1
		0x80,                           // PTS only
		5,                              // PES_header_data_length
		0x21|byte(pts>>29&0x0E),        // '0010' PTS[32..30] marker
		byte(pts>>22), byte(pts>>14|1), // PTS[29..15] marker
		byte(pts>>7), byte(pts<<1|1), // PTS[14..0] marker
	), nil
}

func wrapTS(t int64) int64 {
	t %= TimestampWrap
	if t < 0 {
		t += TimestampWrap
	}
	return t
}

// First describes the adaptation field of the first packet of a PES.
type First struct {
	PCR          bool // reserve room for a PCR (filled in later by SetPCR)
	RandomAccess bool // random_access_indicator: the PES starts a decodable picture
}

// firstAF is the adaptation field size the first packet needs before any stuffing.
func (f First) afLen() int {
	switch {
	case f.PCR:
		return 8 // length, flags, 6 PCR bytes
	case f.RandomAccess:
		return 2 // length, flags
	}
	return 0
}

// MinPackets is the fewest packets that carry a PES of n bytes.
func MinPackets(n int, f First) int {
	first := maxPayload - f.afLen()
	if n <= first {
		return 1
	}
	return 1 + (n-first+maxPayload-1)/maxPayload
}

// ErrPacketCount is returned when a PES cannot be spread over the requested packets.
var ErrPacketCount = errors.New("mpegts: packet count out of range")

// Packetize appends exactly n packets on pid carrying pes, n between MinPackets(len(pes))
// and len(pes) (every packet carries at least one byte, so the continuity counter moves).
// Packets are filled in order, leaving one byte for each packet still to come; the slack
// is adaptation-field stuffing. Continuity counters are left 0 for SetCC.
func Packetize(dst []Packet, pid uint16, pes []byte, n int, f First) ([]Packet, error) {
	if n < MinPackets(len(pes), f) || n > len(pes) {
		return dst, fmt.Errorf("%w: %d packets for %d bytes", ErrPacketCount, n, len(pes))
	}
	rest := pes
	for k := 0; k < n; k++ {
		var p Packet
		need := 0 // adaptation field bytes this packet must have
		if k == 0 {
			need = f.afLen()
		}
		size := min(maxPayload-need, len(rest)-(n-1-k))
		af := maxPayload - size // adaptation field bytes, length byte included
		afc := byte(0x1)        // payload only
		if af > 0 {
			afc = 0x3 // adaptation field and payload
		}
		writeHeader(&p, pid, k == 0, afc, 0)
		if af > 0 {
			p[headerSize] = byte(af - 1) // adaptation_field_length counts the bytes after it
			i := headerSize + 1
			if af > 1 {
				flags := byte(0)
				if k == 0 && f.RandomAccess {
					flags |= 0x40
				}
				if k == 0 && f.PCR {
					flags |= 0x10
				}
				p[i] = flags
				i++
				if k == 0 && f.PCR {
					i += 6 // the PCR, written by SetPCR once the packet's slot is known
				}
				for ; i < headerSize+af; i++ {
					p[i] = 0xFF // stuffing
				}
			}
		}
		copy(p[headerSize+af:], rest[:size])
		rest = rest[size:]
		dst = append(dst, p)
	}
	return dst, nil
}

// SetCC sets a packet's continuity counter.
func SetCC(p *Packet, cc uint8) { p[3] = p[3]&0xF0 | cc&0x0F }

// SetPCR writes pcr (27 MHz units, wrapped at PCRWrap) into a packet whose adaptation
// field carries a PCR; it reports whether the packet had room for one.
func SetPCR(p *Packet, pcr int64) bool {
	if p[3]&0x20 == 0 || p[4] < 7 || p[5]&0x10 == 0 {
		return false
	}
	pcr %= PCRWrap
	if pcr < 0 {
		pcr += PCRWrap
	}
	base, ext := pcr/300, pcr%300
	p[6] = byte(base >> 25)
	p[7] = byte(base >> 17)
	p[8] = byte(base >> 9)
	p[9] = byte(base >> 1)
	p[10] = byte(base<<7) | 0x7E | byte(ext>>8&1)
	p[11] = byte(ext)
	return true
}

// CRC32 is the MPEG-2 CRC (polynomial 0x04C11DB7, initial 0xFFFFFFFF, no reflection) that
// closes every PSI section; over a whole section including its CRC it yields 0.
func CRC32(b []byte) uint32 {
	crc := uint32(0xFFFFFFFF)
	for _, c := range b {
		crc = crc<<8 ^ crcTable[byte(crc>>24)^c]
	}
	return crc
}

var crcTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
