package counter

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 20, 0, 0, 0, time.UTC)

func newTestStore(t testing.TB, name string, max int) Store {
	t.Helper()
	s, err := NewStore(name, StoreOptions{MaxViewers: max, Epoch: t0}) // DefaultShards, as served
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func v4ID(i int) ID {
	return AddrID(netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)}))
}

// TestStoreSemantics runs every store, unsafe included, from one goroutine: the same
// heartbeats must give the same results and counts whatever the store.
func TestStoreSemantics(t *testing.T) {
	a, b, c := v4ID(1), v4ID(2), v4ID(3)
	for _, name := range StoreNames {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t, name, 0)
			steps := []struct {
				id   ID
				at   time.Duration
				want Result
				n    int
			}{
				{a, 0, Added, 1},               // first heartbeat adds
				{a, time.Second, Refreshed, 1}, // the same viewer again refreshes
				{b, time.Second, Added, 2},     // a second viewer
				{AddrID(netip.MustParseAddr("::ffff:127.0.0.1")), 2 * time.Second, Refreshed, 2}, // v4-mapped is the same viewer as v4
				{c, 3 * time.Second, Added, 3}, // c is seen last
			}
			for i, st := range steps {
				if got := s.Heartbeat(st.id, t0.Add(st.at)); got != st.want {
					t.Fatalf("step %d: Heartbeat = %v, want %v", i, got, st.want)
				}
				if got := s.Count(); got != st.n {
					t.Fatalf("step %d: Count = %d, want %d", i, got, st.n)
				}
			}
			// a was refreshed at 2s (as ::ffff:127.0.0.1), b last seen at 1s, c at 3s.
			if n := s.Sweep(t0.Add(time.Second - 1)); n != 0 {
				t.Fatalf("sweep before anyone's last heartbeat evicted %d", n)
			}
			if n := s.Sweep(t0.Add(time.Second)); n != 1 || s.Count() != 2 {
				t.Fatalf("sweep at b's last-seen time: evicted %d, count %d; want 1, 2 (b goes at exactly its time)", n, s.Count())
			}
			if n := s.Sweep(t0.Add(3 * time.Second)); n != 2 || s.Count() != 0 {
				t.Fatalf("sweep at 3s: evicted %d, count %d; want 2, 0", n, s.Count())
			}
			if got := s.Heartbeat(b, t0.Add(4*time.Second)); got != Added {
				t.Fatalf("a swept viewer returning is %v, want new", got)
			}
		})
	}
}

// TestStoreCap: beyond MaxViewers new viewers overflow, known ones still refresh, and a
// sweep makes room again.
func TestStoreCap(t *testing.T) {
	for _, name := range StoreNames {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t, name, 2)
			for i, want := range []Result{Added, Added, Overflow, Overflow} {
				if got := s.Heartbeat(v4ID(i), t0); got != want {
					t.Fatalf("viewer %d: %v, want %v", i, got, want)
				}
			}
			if s.Count() != 2 {
				t.Fatalf("count %d at cap 2", s.Count())
			}
			if got := s.Heartbeat(v4ID(0), t0.Add(time.Second)); got != Refreshed {
				t.Fatalf("known viewer at the cap: %v, want refresh", got)
			}
			if n := s.Sweep(t0); n != 1 {
				t.Fatalf("sweep evicted %d, want 1 (viewer 1)", n)
			}
			if got := s.Heartbeat(v4ID(2), t0.Add(time.Second)); got != Added {
				t.Fatalf("after a sweep freed a place: %v, want new", got)
			}
			if got := s.Heartbeat(v4ID(3), t0.Add(time.Second)); got != Overflow {
				t.Fatalf("cap full again: %v, want overflow", got)
			}
		})
	}
}

// TestStoreChurn drives every store and a plain model map with the same random joins,
// refreshes and sweeps; the count and evictions must match the model at every step.
func TestStoreChurn(t *testing.T) {
	for _, name := range StoreNames {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			s := newTestStore(t, name, 0)
			model := map[ID]time.Time{}
			now := t0
			for step := 0; step < 5000; step++ {
				now = now.Add(time.Duration(rng.IntN(200)) * time.Millisecond)
				if rng.IntN(50) == 0 {
					cutoff := now.Add(-10 * time.Second)
					want := 0
					for id, seen := range model {
						if !seen.After(cutoff) {
							delete(model, id)
							want++
						}
					}
					if got := s.Sweep(cutoff); got != want {
						t.Fatalf("step %d: sweep evicted %d, model %d", step, got, want)
					}
				} else {
					id := v4ID(rng.IntN(400))
					_, known := model[id]
					want := Added
					if known {
						want = Refreshed
					}
					model[id] = now
					if got := s.Heartbeat(id, now); got != want {
						t.Fatalf("step %d: %v, model says %v", step, got, want)
					}
				}
				if s.Count() != len(model) {
					t.Fatalf("step %d: count %d, model %d", step, s.Count(), len(model))
				}
			}
		})
	}
}

// lockedStores are the stores meant for concurrent use (all but unsafe).
func lockedStores() []string { return []string{StoreMutex, StoreRWMutex, StoreSharded, StoreSyncMap} }

// TestStoreConcurrent hammers each safe store from many goroutines while a sweeper runs
// (the pattern that crashes the unsafe store). Run under -race it checks the locking;
// the counts check that no heartbeat was lost or counted twice.
func TestStoreConcurrent(t *testing.T) {
	const workers, viewers, rounds = 8, 2000, 5
	for _, name := range lockedStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, name, 0)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			sweeps := make(chan int, 1)
			go func() { // sweeps whose cutoff precedes every heartbeat: they must evict nothing
				n := 0
				for {
					select {
					case <-stop:
						sweeps <- n
						return
					default:
					}
					n += s.Sweep(t0.Add(-time.Second))
				}
			}()
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for r := 0; r < rounds; r++ {
						for i := 0; i < viewers; i++ { // every worker visits every viewer
							s.Heartbeat(v4ID((i+w*viewers/workers)%viewers), t0.Add(time.Duration(r)*time.Second))
						}
					}
				}(w)
			}
			wg.Wait()
			close(stop)
			if n := <-sweeps; n != 0 {
				t.Fatalf("sweeps with an early cutoff evicted %d", n)
			}
			if s.Count() != viewers {
				t.Fatalf("count %d, want %d", s.Count(), viewers)
			}
			if n := s.Sweep(t0.Add(time.Hour)); n != viewers || s.Count() != 0 {
				t.Fatalf("final sweep evicted %d, count %d; want %d, 0", n, s.Count(), viewers)
			}
		})
	}
}

// TestStoreConcurrentChurn races heartbeats against sweeps that do evict, and checks
// the invariant that matters: the count always equals what the store holds, so a final
// sweep of everything evicts exactly Count().
func TestStoreConcurrentChurn(t *testing.T) {
	const workers, viewers, beats = 6, 500, 20000
	for _, name := range lockedStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, name, 0)
			var wg sync.WaitGroup
			done := make(chan struct{})
			swept := make(chan struct{})
			go func() {
				defer close(swept)
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					// cutoffs sweep through the heartbeat times, evicting some viewers
					// just as they are refreshed
					s.Sweep(t0.Add(time.Duration(i%beats) * time.Millisecond))
				}
			}()
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					for i := 0; i < beats; i++ {
						s.Heartbeat(v4ID(rng.IntN(viewers)), t0.Add(time.Duration(i)*time.Millisecond))
					}
				}(w)
			}
			wg.Wait()
			close(done)
			<-swept
			n := s.Count()
			if n < 0 || n > viewers {
				t.Fatalf("count %d outside [0, %d]", n, viewers)
			}
			if ev := s.Sweep(t0.Add(time.Hour)); ev != n || s.Count() != 0 {
				t.Fatalf("count said %d but a full sweep evicted %d (count after: %d)", n, ev, s.Count())
			}
		})
	}
}

// TestStoreConcurrentCap: racing new viewers never push a safe store past its cap, and
// exactly MaxViewers of them are told Added.
func TestStoreConcurrentCap(t *testing.T) {
	const workers, perWorker, max = 8, 500, 1000
	for _, name := range lockedStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, name, max)
			var wg sync.WaitGroup
			added := make([]int, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; i < perWorker; i++ {
						if s.Heartbeat(v4ID(w*perWorker+i), t0) == Added {
							added[w]++
						}
					}
				}(w)
			}
			wg.Wait()
			total := 0
			for _, a := range added {
				total += a
			}
			if total != max || s.Count() != max {
				t.Fatalf("added %d, count %d; want both %d", total, s.Count(), max)
			}
			if n := s.Sweep(t0); n != max {
				t.Fatalf("stored %d viewers, want %d", n, max)
			}
		})
	}
}

func TestNewStoreErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  StoreOptions
	}{
		{"nope", StoreOptions{}},                   // unknown store
		{"", StoreOptions{}},                       // empty name (Config fills the default, NewStore does not)
		{StoreMutex, StoreOptions{MaxViewers: -1}}, // negative cap
		{StoreSharded, StoreOptions{Shards: -2}},   // negative shard count
	} {
		if _, err := NewStore(tc.name, tc.opt); err == nil {
			t.Errorf("NewStore(%q, %+v) succeeded", tc.name, tc.opt)
		}
	}
}

func TestShardedRoundsShards(t *testing.T) {
	for _, tc := range []struct{ in, want int }{
		{0, DefaultShards}, // default
		{1, 1},             // one shard: the mutex store with extra steps
		{5, 8},             // rounded up to a power of two
		{64, 64},           // already a power of two
	} {
		if got := NewShardedStore(StoreOptions{Shards: tc.in}).Shards(); got != tc.want {
			t.Errorf("Shards %d -> %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestShardedSpreads: loopback viewers 127.x.y.z (identical in all but 3 bytes) spread
// over the shards, so the sharding actually shards.
func TestShardedSpreads(t *testing.T) {
	s := NewShardedStore(StoreOptions{Shards: 64})
	for i := 0; i < 6400; i++ {
		s.Heartbeat(v4ID(i), t0)
	}
	for i := range s.shards {
		if n := len(s.shards[i].m); n < 50 || n > 150 {
			t.Errorf("shard %d holds %d of 6400 viewers; want about 100", i, n)
		}
	}
}
