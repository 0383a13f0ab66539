package counter

import "time"

// UnsafeStore is the original viewer counter: a plain map written from every request
// handler and from the sweeper with no lock at all.
//
// It exists only to reproduce the crash the real counter crash-looped with,
// `fatal error: concurrent map writes`: the Go runtime detects two goroutines writing the
// map at once and kills the process (a fatal error, not a panic; nothing can recover it).
// Never serve viewers with it. It is safe only when one goroutine at a time uses it,
// which is how the tests run it under the race detector.
type UnsafeStore struct {
	epoch epoch
	max   int
	m     map[ID]int64 // last seen, ns since epoch; deliberately unguarded
}

var _ Store = (*UnsafeStore)(nil)

// NewUnsafeStore returns an empty UnsafeStore.
func NewUnsafeStore(opt StoreOptions) *UnsafeStore {
	return &UnsafeStore{epoch: newEpoch(opt.Epoch), max: opt.MaxViewers, m: make(map[ID]int64)}
}

// Heartbeat writes the map the way the original did: one unguarded assignment. Whether
// the viewer is new is read from len, so the hot path is a write and nothing else,
// which is exactly the pattern the runtime's concurrent-write check catches.
func (s *UnsafeStore) Heartbeat(id ID, now time.Time) Result {
	n := len(s.m)
	if s.max > 0 && n >= s.max {
		if _, ok := s.m[id]; !ok {
			return Overflow
		}
	}
	s.m[id] = s.epoch.stamp(now)
	if len(s.m) > n {
		return Added
	}
	return Refreshed
}

// Count is len of the map: O(1), and (like everything here) unsynchronised.
func (s *UnsafeStore) Count() int { return len(s.m) }

// Sweep deletes stale viewers while handlers may be writing: the second writer.
func (s *UnsafeStore) Sweep(cutoff time.Time) int {
	c := s.epoch.stamp(cutoff)
	evicted := 0
	for id, seen := range s.m {
		if seen <= c {
			delete(s.m, id)
			evicted++
		}
	}
	return evicted
}
