package counter

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// benchViewers is the population the benchmarks track: 20 times the original relay's
// 5,000, where per-viewer memory starts to matter.
const benchViewers = 100_000

func benchIDs(n int) []ID {
	ids := make([]ID, n)
	for i := range ids {
		ids[i] = v4ID(i + 1<<16) // 127.1.0.0 and up, like the load generator's sources
	}
	return ids
}

// bytesPerViewer is the live heap a store needs to track n viewers, measured after a GC
// before and after filling it (the ID slice is allocated before the first reading).
func bytesPerViewer(tb testing.TB, name string, ids []ID) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newTestStore(tb, name, 0)
	for _, id := range ids {
		s.Heartbeat(id, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.Count() != len(ids) {
		tb.Fatalf("%s holds %d of %d", name, s.Count(), len(ids))
	}
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(ids))
}

// BenchmarkHeartbeat measures heartbeats/s of each store with 100,000 viewers tracked,
// every goroutine refreshing viewers in its own random order (refreshes are what a
// counter mostly sees: a viewer joins once and beats every 5 s for the whole stream),
// and the heap each store needs per viewer. Run it with -cpu 1,2,8:
//
//	go test -run '^$' -bench Heartbeat -cpu 1,2,8 ./servers/counter
//
// unsafe runs from one goroutine whatever -cpu says (with two it would crash the
// benchmark, which is the point of it): it is the no-lock baseline.
func BenchmarkHeartbeat(b *testing.B) {
	ids := benchIDs(benchViewers)
	for _, name := range StoreNames {
		b.Run(name, func(b *testing.B) {
			perViewer := bytesPerViewer(b, name, ids)
			s := newTestStore(b, name, 0)
			for _, id := range ids {
				s.Heartbeat(id, t0)
			}
			now := t0.Add(time.Second)
			var seed atomic.Uint64
			b.ResetTimer()
			if name == StoreUnsafe {
				for i := 0; b.Loop(); i++ {
					s.Heartbeat(ids[i%len(ids)], now)
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					rng := rand.New(rand.NewPCG(seed.Add(1), 1))
					i := rng.IntN(len(ids))
					step := 1 + 2*rng.IntN(len(ids)/2) // odd, so the walk visits everyone
					for pb.Next() {
						s.Heartbeat(ids[i], now)
						i = (i + step) % len(ids)
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
			b.ReportMetric(perViewer, "B/viewer")
			if s.Count() != benchViewers {
				b.Fatalf("count %d after refreshes, want %d", s.Count(), benchViewers)
			}
		})
	}
}

// BenchmarkSweep measures one sweep over 100,000 viewers of which half are stale: the
// time the mutex and rwmutex stores hold every heartbeat up, and the sharded store
// holds 1/64 of them at a time.
func BenchmarkSweep(b *testing.B) {
	ids := benchIDs(benchViewers)
	for _, name := range StoreNames {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				s := newTestStore(b, name, 0)
				for i, id := range ids {
					s.Heartbeat(id, t0.Add(time.Duration(i%2)*time.Minute))
				}
				b.StartTimer()
				if n := s.Sweep(t0); n != benchViewers/2 {
					b.Fatalf("evicted %d, want %d", n, benchViewers/2)
				}
			}
		})
	}
}

// BenchmarkHandler measures the whole HTTP handler in process (identity, store,
// metrics, JSON answer) for the safe stores, without the network.
func BenchmarkHandler(b *testing.B) {
	for _, name := range lockedStores() {
		b.Run(name, func(b *testing.B) {
			s, err := New(Config{Store: name})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			h := s.Handler()
			remotes := make([]string, 5000) // the original relay's crowd, each its own address
			for i := range remotes {
				remotes[i] = netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}).String() + ":40000"
			}
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(1)) * 997
				req := httptest.NewRequest(http.MethodGet, "/api/viewers", nil)
				for pb.Next() {
					req.RemoteAddr = remotes[i%len(remotes)]
					h.ServeHTTP(discardWriter{}, req)
					i++
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
		})
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}

// BenchmarkSweepStall measures what a sweep costs the heartbeats arriving meanwhile:
// while one goroutine sweeps 100,000 viewers (half of them stale), another keeps
// heartbeating, and the longest single heartbeat is the stall. Under the mutex store it
// is the whole sweep; under the sharded store, one shard's. Reported as the median over
// iterations of each sweep's longest heartbeat (the machine's own preemptions add
// noise to any single one).
func BenchmarkSweepStall(b *testing.B) {
	ids := benchIDs(benchViewers)
	for _, name := range lockedStores() {
		b.Run(name, func(b *testing.B) {
			var stalls []time.Duration
			for b.Loop() {
				b.StopTimer()
				s := newTestStore(b, name, 0)
				for i, id := range ids {
					s.Heartbeat(id, t0.Add(time.Duration(i%2)*time.Minute))
				}
				b.StartTimer()
				done := make(chan struct{})
				go func() {
					s.Sweep(t0)
					close(done)
				}()
				var worst time.Duration
				now := t0.Add(2 * time.Minute)
			beat:
				for i := 1; ; i += 2 { // the fresh half, which the sweep keeps
					select {
					case <-done:
						break beat
					default:
					}
					start := time.Now()
					s.Heartbeat(ids[i%len(ids)], now)
					worst = max(worst, time.Since(start))
				}
				stalls = append(stalls, worst)
			}
			slices.Sort(stalls)
			b.ReportMetric(float64(stalls[len(stalls)/2].Microseconds()), "µs-stall")
		})
	}
}
