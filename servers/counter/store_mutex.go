package counter

import (
	"sync"
	"sync/atomic"
	"time"
)

// MutexStore is the original fix: the same map behind one mutex. Every heartbeat and
// the whole sweep take the one lock, so a sweep over many viewers holds up every
// heartbeat for its duration, and heartbeats on different cores queue for one lock.
type MutexStore struct {
	epoch epoch
	max   int
	count atomic.Int64 // len(m), readable without the lock

	mu sync.Mutex   // protects m
	m  map[ID]int64 // last seen, ns since epoch
}

var _ Store = (*MutexStore)(nil)

// NewMutexStore returns an empty MutexStore.
func NewMutexStore(opt StoreOptions) *MutexStore {
	return &MutexStore{epoch: newEpoch(opt.Epoch), max: opt.MaxViewers, m: make(map[ID]int64)}
}

// Heartbeat records id under the lock. A known viewer costs one map assignment; the
// lookup happens only at the cap, to tell a refresh from an overflow.
func (s *MutexStore) Heartbeat(id ID, now time.Time) Result {
	t := s.epoch.stamp(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.m)
	if s.max > 0 && n >= s.max {
		if _, ok := s.m[id]; !ok {
			return Overflow
		}
	}
	s.m[id] = t
	if len(s.m) == n {
		return Refreshed
	}
	s.count.Store(int64(n + 1))
	return Added
}

// Count reads the figure kept beside the map; it takes no lock.
func (s *MutexStore) Count() int { return int(s.count.Load()) }

// Sweep scans the whole map under the lock.
func (s *MutexStore) Sweep(cutoff time.Time) int {
	c := s.epoch.stamp(cutoff)
	s.mu.Lock()
	defer s.mu.Unlock()
	evicted := 0
	for id, seen := range s.m {
		if seen <= c {
			delete(s.m, id)
			evicted++
		}
	}
	s.count.Store(int64(len(s.m)))
	return evicted
}
