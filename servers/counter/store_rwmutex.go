package counter

import (
	"sync"
	"sync/atomic"
	"time"
)

// RWMutexStore lets a known viewer refresh under a shared read lock: the map only finds
// the viewer's slot in a slice of timestamps, and the timestamp is stored atomically.
// Only a new viewer and the sweep take the write lock. Most heartbeats are refreshes,
// so readers rarely wait on each other; but every read lock still touches the one
// RWMutex's counter, which is the cost the benchmarks show on several cores.
type RWMutexStore struct {
	epoch epoch
	max   int
	count atomic.Int64 // len(m), readable without the lock

	// mu protects m, free and the seen slice itself (its header, its length and the
	// assignment of slots). Holding the read lock is enough to store into seen[i] of a
	// slot found in m, because a slot only changes owner under the write lock; such
	// stores use sync/atomic.
	mu   sync.RWMutex
	m    map[ID]uint32 // viewer -> slot in seen
	seen []int64       // last seen, ns since epoch, per slot
	free []uint32      // slots of evicted viewers, reused before seen grows
}

var _ Store = (*RWMutexStore)(nil)

// NewRWMutexStore returns an empty RWMutexStore.
func NewRWMutexStore(opt StoreOptions) *RWMutexStore {
	return &RWMutexStore{epoch: newEpoch(opt.Epoch), max: opt.MaxViewers, m: make(map[ID]uint32)}
}

// Heartbeat refreshes a known viewer under the read lock; a new one takes the write lock.
func (s *RWMutexStore) Heartbeat(id ID, now time.Time) Result {
	t := s.epoch.stamp(now)
	s.mu.RLock()
	if slot, ok := s.m[id]; ok {
		atomic.StoreInt64(&s.seen[slot], t)
		s.mu.RUnlock()
		return Refreshed
	}
	s.mu.RUnlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	if slot, ok := s.m[id]; ok { // added between the two locks
		atomic.StoreInt64(&s.seen[slot], t)
		return Refreshed
	}
	if s.max > 0 && len(s.m) >= s.max {
		return Overflow
	}
	var slot uint32
	if n := len(s.free); n > 0 {
		slot = s.free[n-1]
		s.free = s.free[:n-1]
		s.seen[slot] = t
	} else {
		slot = uint32(len(s.seen))
		s.seen = append(s.seen, t)
	}
	s.m[id] = slot
	s.count.Store(int64(len(s.m)))
	return Added
}

// Count reads the figure kept beside the map; it takes no lock.
func (s *RWMutexStore) Count() int { return int(s.count.Load()) }

// Sweep scans the map under the write lock and frees the slots of evicted viewers.
func (s *RWMutexStore) Sweep(cutoff time.Time) int {
	c := s.epoch.stamp(cutoff)
	s.mu.Lock()
	defer s.mu.Unlock()
	evicted := 0
	for id, slot := range s.m {
		if s.seen[slot] <= c {
			delete(s.m, id)
			s.free = append(s.free, slot)
			evicted++
		}
	}
	if len(s.m) == 0 { // everyone left: give the memory back
		s.seen, s.free = nil, nil
	}
	s.count.Store(int64(len(s.m)))
	return evicted
}
