package faultproxy

import (
	"io"
	"net"
	"testing"
)

// BenchmarkThroughput copies bytes to a sink directly and through a zero-delay proxy;
// the figure that matters is the proxy's MB/s against the direct one (how much a geo or
// uplink run pays for the proxy itself).
func BenchmarkThroughput(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	p, err := New(Config{Target: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, 1<<20)
	for _, tc := range []struct{ name, addr string }{{"direct", ln.Addr().String()}, {"proxy", p.Addr()}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
