package faultproxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/clock"
)

// echoServer accepts connections and echoes what it reads; it reports each client's
// remote address on addrs.
func echoServer(t *testing.T) (addr string, addrs <-chan net.Addr) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Addr, 16)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case ch <- c.RemoteAddr():
			default:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), ch
}

func newProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// reader collects what a connection receives, so a test can check "nothing yet"
// without blocking.
func reader(c net.Conn) <-chan []byte {
	ch := make(chan []byte, 64)
	go func() {
		defer close(ch)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				ch <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func nothingYet(t *testing.T, ch <-chan []byte, what string) {
	t.Helper()
	select {
	case b := <-ch:
		t.Fatalf("%s: got %q before its time", what, b)
	case <-time.After(30 * time.Millisecond):
	}
}

func receive(t *testing.T, ch <-chan []byte, want string) {
	t.Helper()
	var got []byte
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("closed after %q, want %q", got, want)
			}
			got = append(got, b...)
		case <-deadline:
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestForwardsBytesBothWays(t *testing.T) {
	target, _ := echoServer(t)
	p := newProxy(t, Config{Target: target})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 3<<20) // many chunks, both directions at once
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo through the proxy differs: %d bytes back of %d", len(got), len(payload))
	}
	if s := p.Stats(); s.Accepted != 1 || s.BytesUp != int64(len(payload)) || s.BytesDown != int64(len(payload)) {
		t.Errorf("stats %+v", s)
	}
}

// TestDelayModel walks a fake clock through one request on a new connection: the
// handshake costs one round trip, the request and the reply half a round trip each.
func TestDelayModel(t *testing.T) {
	target, _ := echoServer(t)
	clk := clock.NewFake(time.Unix(1000, 0))
	p := newProxy(t, Config{Target: target, Delay: 100 * time.Millisecond, Clock: clk})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := reader(c)
	c.Write([]byte("ping"))

	step := func(d time.Duration, what string) {
		t.Helper()
		if !clk.WaitTimers(1, 10*time.Second) {
			t.Fatalf("%s: the proxy is not waiting", what)
		}
		nothingYet(t, got, what)
		clk.Advance(d)
	}
	step(100*time.Millisecond, "handshake") // dial after one round trip
	step(50*time.Millisecond, "request")    // request arrives half a round trip later
	step(50*time.Millisecond, "reply")      // reply comes back half a round trip later
	receive(t, got, "ping")

	// Turned off at run time, the same connection answers without waiting.
	p.SetDelay(0)
	c.Write([]byte("pong"))
	receive(t, got, "pong")
	if p.Delay() != 0 {
		t.Errorf("Delay() = %s", p.Delay())
	}
}

// TestLinkIsShared sends 1000 bytes back on each of two connections over one
// 8 kbit/s link: the first arrives after 1 s, the second only after 2 s.
func TestLinkIsShared(t *testing.T) {
	target, _ := echoServer(t)
	clk := clock.NewFake(time.Unix(1000, 0))
	link, err := NewLink(8000)
	if err != nil {
		t.Fatal(err)
	}
	p1 := newProxy(t, Config{Target: target, Link: link, Clock: clk})
	p2 := newProxy(t, Config{Target: target, Link: link, Clock: clk})
	c1, _ := net.Dial("tcp", p1.Addr())
	c2, _ := net.Dial("tcp", p2.Addr())
	defer c1.Close()
	defer c2.Close()
	r1, r2 := reader(c1), reader(c2)
	msg := string(bytes.Repeat([]byte("x"), 1000))

	c1.Write([]byte(msg))
	if !clk.WaitTimers(1, 10*time.Second) {
		t.Fatal("first reply is not waiting for the link")
	}
	c2.Write([]byte(msg))
	if !clk.WaitTimers(2, 10*time.Second) {
		t.Fatal("second reply is not waiting for the link")
	}
	clk.Advance(999 * time.Millisecond)
	nothingYet(t, r1, "first reply at 0.999 s")
	clk.Advance(time.Millisecond)
	receive(t, r1, msg)
	nothingYet(t, r2, "second reply at 1 s")
	clk.Advance(time.Second)
	receive(t, r2, msg)

	if _, err := NewLink(0); err == nil {
		t.Error("NewLink(0) accepted")
	}
}

func TestPreserveSource(t *testing.T) {
	target, addrs := echoServer(t)
	p := newProxy(t, Config{Target: target, PreserveSource: true})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.77")}}
	c, err := d.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	select {
	case a := <-addrs:
		if ip := a.(*net.TCPAddr).IP.String(); ip != "127.0.0.77" {
			t.Errorf("target saw %s, want the client's 127.0.0.77", ip)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("target saw no connection")
	}
}

func TestCloseEndsConnections(t *testing.T) {
	target, _ := echoServer(t)
	p, err := New(Config{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := reader(c)
	c.Write([]byte("a"))
	receive(t, got, "a")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-got:
		if ok {
			t.Fatal("data after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client connection still open after Close")
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Error("still accepting after Close")
	}
	p.Close() // idempotent
}

func TestUnreachableTargetClosesClient(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, Config{Target: dead})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read = %v, want the connection closed", err)
	}
	if p.Stats().DialFailed != 1 {
		t.Errorf("stats %+v", p.Stats())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no target accepted")
	}
	if _, err := New(Config{Target: "127.0.0.1:1", Delay: -time.Second}); err == nil {
		t.Error("negative delay accepted")
	}
	if _, err := New(Config{Target: "127.0.0.1:1", Listen: "256.0.0.1:0"}); err == nil {
		t.Error("bad listen address accepted")
	}
}
