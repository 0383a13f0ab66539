package mpegts

import (
	"bytes"
	"testing"
)

func TestCRC32(t *testing.T) {
	// The standard check value of CRC-32/MPEG-2.
	if got := CRC32([]byte("123456789")); got != 0x0376E6E7 {
		t.Fatalf("CRC32(123456789) = %#x, want 0x0376e6e7", got)
	}
}

func TestPATAndPMTRoundTrip(t *testing.T) {
	pat := PAT(1, 0x1000, 5)
	h, err := Parse(pat[:])
	if err != nil {
		t.Fatal(err)
	}
	if h.PID != PIDPAT || !h.PUSI || h.CC != 5 {
		t.Fatalf("PAT header = %+v", h)
	}
	s, err := ParsePSI(h.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if s.TableID != 0 || s.Programs[1] != 0x1000 || len(s.Programs) != 1 {
		t.Fatalf("PAT = %+v", s)
	}

	streams := []Stream{{StreamTypeH264, 0x100}, {StreamTypeAAC, 0x101}}
	pmt := PMT(0x1000, 1, 0x100, streams, 15)
	h, err = Parse(pmt[:])
	if err != nil {
		t.Fatal(err)
	}
	s, err = ParsePSI(h.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if s.TableID != 2 || s.IDExt != 1 || s.PCRPID != 0x100 || len(s.Streams) != 2 || s.Streams[0] != streams[0] || s.Streams[1] != streams[1] {
		t.Fatalf("PMT = %+v", s)
	}

	pmt[20] ^= 0xFF // corrupt the section: the CRC must notice
	h, _ = Parse(pmt[:])
	if _, err := ParsePSI(h.Payload); err == nil {
		t.Fatal("ParsePSI accepted a corrupted PMT")
	}
}

func TestPacketizeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int // PES bytes, header included
		extra int // packets beyond the minimum
		first First
	}{
		{"fits one packet exactly", 184, 0, First{}},
		{"one byte over one packet", 185, 0, First{}},
		{"first packet carries a PCR", 4000, 0, First{PCR: true, RandomAccess: true}},
		{"random access without PCR", 300, 0, First{RandomAccess: true}},
		{"spread over 15 extra packets", 3000, 15, First{PCR: true}},
		{"a tiny PES in two packets", 20, 1, First{}},
		{"as many packets as bytes", 30, 29, First{}},
		{"183 bytes: one byte of adaptation field", 183, 0, First{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pes := make([]byte, tc.size)
			for i := range pes {
				pes[i] = byte(i*7 + 3)
			}
			n := MinPackets(tc.size, tc.first) + tc.extra
			pkts, err := Packetize(nil, 0x100, pes, n, tc.first)
			if err != nil {
				t.Fatal(err)
			}
			if len(pkts) != n {
				t.Fatalf("got %d packets, want %d", len(pkts), n)
			}
			if tc.first.PCR && !SetPCR(&pkts[0], 123456789) {
				t.Fatal("SetPCR found no PCR field in the first packet")
			}
			var got []byte
			for i := range pkts {
				SetCC(&pkts[i], uint8(i))
				h, err := Parse(pkts[i][:])
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if h.PUSI != (i == 0) || h.CC != uint8(i)&0xF || len(h.Payload) == 0 {
					t.Fatalf("packet %d header = %+v", i, h)
				}
				if i == 0 && tc.first.PCR && h.PCR != 123456789 {
					t.Fatalf("PCR = %d, want 123456789", h.PCR)
				}
				if i == 0 && h.RandomAccess != tc.first.RandomAccess {
					t.Fatalf("random access = %v", h.RandomAccess)
				}
				got = append(got, h.Payload...)
			}
			if !bytes.Equal(got, pes) {
				t.Fatal("payloads do not reassemble to the PES")
			}
		})
	}
	if _, err := Packetize(nil, 0x100, make([]byte, 500), 2, First{}); err == nil {
		t.Fatal("Packetize squeezed 500 bytes into 2 packets")
	}
	if _, err := Packetize(nil, 0x100, make([]byte, 5), 6, First{}); err == nil {
		t.Fatal("Packetize made a packet without payload")
	}
}

func TestPESHeaderRoundTrip(t *testing.T) {
	for _, pts := range []int64{0, 1, 63000, TimestampWrap - 1, TimestampWrap + 5, -1} {
		b, err := AppendPESHeader(nil, StreamIDAudio, pts, 100)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, make([]byte, 100)...)
		pes, err := ParsePES(b)
		if err != nil {
			t.Fatal(err)
		}
		want := wrapTS(pts)
		if pes.PTS != want || pes.DTS != want || pes.StreamID != StreamIDAudio || pes.HeaderLen != PESHeaderLen || pes.Length != len(b)-6 {
			t.Fatalf("pts %d: parsed %+v", pts, pes)
		}
	}
	b, _ := AppendPESHeader(nil, StreamIDVideo, 10, 1<<20)
	if pes, _ := ParsePES(b); pes.Length != 0 {
		t.Fatalf("video PES length = %d, want 0 (unbounded)", pes.Length)
	}
	if _, err := AppendPESHeader(nil, StreamIDAudio, 0, 1<<20); err == nil {
		t.Fatal("audio PES longer than 64 KiB accepted")
	}
}

func TestCheckerCatchesGlitches(t *testing.T) {
	stream := func() []Packet {
		var pkts []Packet
		for i := range 3 {
			pes, _ := AppendPESHeader(nil, StreamIDVideo, int64(i)*3600, 400)
			pes = append(pes, make([]byte, 400)...)
			pkts, _ = Packetize(pkts, 0x100, pes, MinPackets(len(pes), First{PCR: true}), First{PCR: true})
			SetPCR(&pkts[len(pkts)-3], int64(i)*3600*300)
		}
		for i := range pkts {
			SetCC(&pkts[i], uint8(i))
		}
		return pkts
	}
	for _, tc := range []struct {
		name   string
		break_ func(p []Packet)
		ok     bool
	}{
		{"untouched stream passes", func([]Packet) {}, true},
		{"skipped continuity counter", func(p []Packet) { SetCC(&p[4], 9) }, false},
		{"PCR going backwards", func(p []Packet) { SetPCR(&p[6], 0) }, false},
		{"PTS going backwards", func(p []Packet) {
			h, _ := Parse(p[6][:])
			copy(h.Payload[9:14], []byte{0x21, 0, 1, 0, 1}) // PTS 0
		}, false},
		{"null packet anywhere", func(p []Packet) { p[2] = Null() }, false}, // displaces a payload packet: CC skips
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := stream()
			tc.break_(pkts)
			var c Checker
			var err error
			for i := range pkts {
				if err = c.Check(pkts[i][:]); err != nil {
					break
				}
			}
			if (err == nil) != tc.ok {
				t.Fatalf("Check error = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestUnwrap(t *testing.T) {
	for _, tc := range []struct{ v, ref, want int64 }{
		{10, 5, 10}, // no wrap nearby
		{5, TimestampWrap - 10, TimestampWrap + 5}, // wrapped forwards
		{TimestampWrap - 3, 2, -3},                 // just before a wrap
		{7, 3*TimestampWrap + 1, 3*TimestampWrap + 7},
	} {
		if got := unwrap(tc.v, tc.ref, TimestampWrap); got != tc.want {
			t.Errorf("unwrap(%d, %d) = %d, want %d", tc.v, tc.ref, got, tc.want)
		}
	}
}

// FuzzParse feeds arbitrary bytes to every reader: none may panic, and a packet that
// parses must have a payload inside the packet.
func FuzzParse(f *testing.F) {
	pat := PAT(1, 0x1000, 0)
	pmt := PMT(0x1000, 1, 0x100, []Stream{{StreamTypeH264, 0x100}}, 0)
	pes, _ := AppendPESHeader(nil, StreamIDVideo, 90000, 300)
	pes = append(pes, make([]byte, 300)...)
	pkts, _ := Packetize(nil, 0x100, pes, 3, First{PCR: true, RandomAccess: true})
	null := Null()
	for _, p := range [][]byte{pat[:], pmt[:], pkts[0][:], pkts[2][:], null[:], {0x47}, nil} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err == nil {
			if len(h.Payload) > PacketSize-headerSize {
				t.Fatalf("payload of %d bytes", len(h.Payload))
			}
			_, _ = ParsePSI(h.Payload)
			_, _ = ParsePES(h.Payload)
		}
		_, _ = ParsePSI(b)
		_, _ = ParsePES(b)
		var c Checker
		for len(b) >= PacketSize {
			_ = c.Check(b[:PacketSize])
			b = b[PacketSize:]
		}
	})
}

// FuzzPacketize checks that any PES spread over any allowed number of packets
// reassembles exactly.
func FuzzPacketize(f *testing.F) {
	f.Add(1000, 3, true, true)
	f.Add(184, 0, false, false)
	f.Add(15, 14, false, true)
	f.Fuzz(func(t *testing.T, size, extra int, pcr, ra bool) {
		if size < 1 || size > 20000 || extra < 0 {
			return
		}
		first := First{PCR: pcr, RandomAccess: ra}
		n := MinPackets(size, first) + extra
		pes := bytes.Repeat([]byte{1, 2, 3, 4, 5}, size/5+1)[:size]
		pkts, err := Packetize(nil, 0x42, pes, n, first)
		if n > size {
			if err == nil {
				t.Fatalf("Packetize accepted %d packets for %d bytes", n, size)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for i := range pkts {
			h, err := Parse(pkts[i][:])
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Payload) == 0 {
				t.Fatalf("packet %d carries no payload", i)
			}
			got = append(got, h.Payload...)
		}
		if !bytes.Equal(got, pes) {
			t.Fatal("payloads do not reassemble")
		}
	})
}
