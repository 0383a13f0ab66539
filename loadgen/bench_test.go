package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

// BenchmarkParseMediaPlaylist: one reload's parse (6 segments with dates) must not
// allocate.
func BenchmarkParseMediaPlaylist(b *testing.B) {
	s := newTestStream(newVClock(epoch.Add(time.Minute)), epoch, 2*time.Second)
	body := []byte(s.media(epoch.Add(time.Minute)))
	pl := new(playlist)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		if err := parsePlaylist(body, pl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientSegment fetches a 125 KB segment (2 s at 500 kbps) over a kept-alive
// connection, with each client; the figure that matters is allocations and CPU per
// request of the viewer side (the server shares the process here).
func BenchmarkClientSegment(b *testing.B) {
	body := make([]byte, 125_000)
	// A canned-answer server, so the allocations counted are the client's own.
	answer := append([]byte("HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...)
	url := rawServer(b, func(req []byte) []byte { return answer })
	ep, path, err := parseEndpoint(url + "/live/0/1.ts")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		new  func() fetcher
	}{
		{ClientStampede, func() fetcher {
			return &httpClient{sched: realScheduler{}, userAgent: DefaultUserAgent, idleAfter: time.Minute}
		}},
		{"nethttp", func() fetcher { return newNetHTTPClient(realScheduler{}, nil, nil, DefaultUserAgent, time.Minute) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := tc.new()
			defer c.closeAll()
			req := request{kind: KindSegment, ep: ep, path: path, ttfbTimeout: 10 * time.Second, totalTimeout: time.Minute}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for i := 0; i < b.N; i++ {
				var res response
				c.get(&req, &res)
				if res.err != nil || res.bytes != int64(len(body)) {
					b.Fatalf("got %d bytes, err %v", res.bytes, res.err)
				}
			}
		})
	}
}

// rawServer answers each HTTP/1.1 request on a kept-alive connection with answer(req),
// where req is the request head; it is the least a server can do.
func rawServer(tb testing.TB, answer func(req []byte) []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var head bytes.Buffer
				for {
					head.Reset()
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						head.Write(line)
						if len(bytes.TrimSpace(line)) == 0 {
							break
						}
					}
					if _, err := c.Write(answer(head.Bytes())); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// startOrigin runs `stampede origin` as a child process (so the benchmark's CPU and
// memory figures are the viewers' alone) and returns its master playlist URL.
func startOrigin(tb testing.TB, args ...string) string {
	tb.Helper()
	bin := testbin.Stampede(tb)
	cmd := exec.Command(bin, append([]string{"origin", "--listen", "127.0.0.1:0", "--epoch", "-30s"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if _, after, ok := strings.Cut(sc.Text(), " addr="); ok {
			addr, _, _ := strings.Cut(after, " ")
			go io.Copy(io.Discard, stderr)
			return "http://" + addr + "/live/master.m3u8"
		}
	}
	tb.Fatalf("origin did not say where it listens")
	return ""
}

// BenchmarkSwarm runs STAMPEDE_BENCH_VIEWERS viewers (default 1000) for 20 s against the
// real origin (a child process) with each HTTP client, and reports per viewer memory
// (Go heap and stacks in use, and resident set growth) and CPU per request of this
// process, plus the net/http client's figures as ratios to the viewer's own client.
// One iteration is one whole run: go test -bench Swarm -benchtime 1x.
func BenchmarkSwarm(b *testing.B) {
	viewers := 1000
	if s := os.Getenv("STAMPEDE_BENCH_VIEWERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("STAMPEDE_BENCH_VIEWERS=%q", s)
		}
		viewers = n
	}
	master := startOrigin(b)
	type figures struct{ cpuPerReq, heapPerViewer, rssPerViewer, allocsPerReq float64 }
	run := func(client string) figures {
		// Two collections empty the buffer pools; FreeOSMemory returns the pages, so the
		// baseline of the second run does not carry the first one's memory.
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		rss0 := currentRSS()
		s, err := NewSwarm(SwarmConfig{
			Targets:  Targets{Master: master},
			Player:   PlayerConfig{Client: client},
			Arrivals: Arrivals{Kind: ArrivalFlash, Count: viewers, Over: 2 * time.Second},
			Duration: 20 * time.Second,
		})
		if err != nil {
			b.Fatal(err)
		}
		var steady runtime.MemStats
		var rss int64
		sampled := make(chan struct{})
		go func() { // steady state: every viewer joined and buffering
			defer close(sampled)
			time.Sleep(15 * time.Second)
			runtime.ReadMemStats(&steady)
			rss = currentRSS()
		}()
		cpu0 := cpuTime()
		res, err := s.Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		cpu := cpuTime() - cpu0
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		<-sampled
		f := res.Figures
		reqs := f.Requests.Playlist + f.Requests.Segment + f.Requests.Heartbeat + f.Requests.Ping
		inUse := func(m *runtime.MemStats) float64 { return float64(m.HeapInuse + m.StackInuse) }
		out := figures{
			cpuPerReq:     float64(cpu.Microseconds()) / float64(reqs),
			heapPerViewer: (inUse(&steady) - inUse(&before)) / float64(viewers),
			rssPerViewer:  float64(rss-rss0) / float64(viewers),
			allocsPerReq:  float64(after.Mallocs-before.Mallocs) / float64(reqs),
		}
		b.Logf("%s: %d viewers, %d requests, cpu %.1fs (%.2f cores), %.0f B heap+stack/viewer, %.0f B RSS/viewer, %.1f allocs/request, stalls %d, errors %d, lag p99 %.1f ms",
			client, viewers, reqs, cpu.Seconds(), cpu.Seconds()/res.Elapsed.Seconds(), out.heapPerViewer, out.rssPerViewer, out.allocsPerReq, f.Stalls.Count, f.Errors.Total, f.Generator.LagP99Ms)
		if f.Errors.Total > 0 {
			b.Errorf("%s: errors %+v", client, f.Errors.ByClass)
		}
		return out
	}
	// STAMPEDE_BENCH_PEER=0 skips the net/http run (e.g. to profile the own client alone).
	peer := os.Getenv("STAMPEDE_BENCH_PEER") != "0"
	for i := 0; i < b.N; i++ {
		own := run(ClientStampede)
		b.ReportMetric(own.cpuPerReq, "cpu-µs/req")
		b.ReportMetric(own.heapPerViewer, "heap-B/viewer")
		b.ReportMetric(own.rssPerViewer, "rss-B/viewer")
		b.ReportMetric(own.allocsPerReq, "allocs/req")
		if peer {
			p := run(ClientNetHTTP)
			b.ReportMetric(p.cpuPerReq/own.cpuPerReq, "nethttp-cpu-x")
			b.ReportMetric(p.heapPerViewer/own.heapPerViewer, "nethttp-heap-x")
		}
	}
}

// currentRSS is this process's resident set size now (/proc/self/statm).
func currentRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
