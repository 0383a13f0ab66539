package counter

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// SyncMapStore keeps viewers in a sync.Map, each with its own atomic timestamp, so a
// refresh takes no lock at all. The price is memory: sync.Map boxes every key in an
// interface (one allocation per viewer and per lookup) and each timestamp is its own
// allocation.
type SyncMapStore struct {
	epoch epoch
	max   int
	count atomic.Int64 // viewers in m; the cap is reserved against it
	// m maps ID -> *atomic.Int64 (last seen, ns since epoch). The sweeper marks a stale
	// entry with tombstone (by compare-and-swap) before deleting it, so a heartbeat that
	// raced with the sweep sees the mark and re-adds the viewer instead of refreshing an
	// entry that is about to vanish.
	m sync.Map
}

// tombstone marks a timestamp whose entry the sweeper has taken.
const tombstone = math.MinInt64

var _ Store = (*SyncMapStore)(nil)

// NewSyncMapStore returns an empty SyncMapStore.
func NewSyncMapStore(opt StoreOptions) *SyncMapStore {
	return &SyncMapStore{epoch: newEpoch(opt.Epoch), max: opt.MaxViewers}
}

// Heartbeat refreshes or adds id without a lock.
func (s *SyncMapStore) Heartbeat(id ID, now time.Time) Result {
	t := s.epoch.stamp(now)
	if t == tombstone { // a time 292 years before the epoch saturates to the mark
		t++
	}
	for {
		if v, ok := s.m.Load(id); ok {
			p := v.(*atomic.Int64)
			for {
				old := p.Load()
				if old == tombstone {
					break
				}
				if p.CompareAndSwap(old, t) {
					return Refreshed
				}
			}
			// The sweeper took this entry; clear it away and add the viewer afresh.
			s.m.CompareAndDelete(id, v)
			continue
		}
		if n := s.count.Add(1); s.max > 0 && n > int64(s.max) {
			s.count.Add(-1)
			return Overflow
		}
		p := new(atomic.Int64)
		p.Store(t)
		if _, loaded := s.m.LoadOrStore(id, p); loaded { // another heartbeat added it first
			s.count.Add(-1)
			continue
		}
		return Added
	}
}

// Count reads the count kept beside the map; it takes no lock.
func (s *SyncMapStore) Count() int { return int(s.count.Load()) }

// Sweep walks the map, marking and deleting stale entries one by one.
func (s *SyncMapStore) Sweep(cutoff time.Time) int {
	c := s.epoch.stamp(cutoff)
	evicted := 0
	s.m.Range(func(k, v any) bool {
		p := v.(*atomic.Int64)
		if old := p.Load(); old != tombstone && old <= c && p.CompareAndSwap(old, tombstone) {
			s.m.CompareAndDelete(k, v)
			s.count.Add(-1)
			evicted++
		}
		return true
	})
	return evicted
}
