package counter

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// ShardedStore spreads viewers over a power-of-two number of maps, each behind its own
// mutex, chosen by a hash of the ID. Heartbeats on different cores rarely meet on one
// lock, and the sweep holds one shard's lock at a time, so a sweep over 100,000 viewers
// delays a heartbeat by one shard's scan, not by the whole map's.
type ShardedStore struct {
	epoch  epoch
	max    int
	shift  uint         // 64 - log2(len(shards)): the top bits of the hash pick a shard
	count  atomic.Int64 // viewers over all shards; the cap is reserved against it
	shards []shard
}

// shard is one lock and its map, padded to a cache line so that two cores taking
// neighbouring locks do not invalidate each other's line.
type shard struct {
	mu sync.Mutex   // protects m
	m  map[ID]int64 // last seen, ns since epoch
	_  [64 - 16]byte
}

var _ Store = (*ShardedStore)(nil)

// NewShardedStore returns an empty ShardedStore with opt.Shards shards rounded up to a
// power of two (DefaultShards when 0).
func NewShardedStore(opt StoreOptions) *ShardedStore {
	n := opt.Shards
	if n <= 0 {
		n = DefaultShards
	}
	log := bits.Len(uint(n - 1)) // ceil(log2 n)
	s := &ShardedStore{
		epoch:  newEpoch(opt.Epoch),
		max:    opt.MaxViewers,
		shift:  uint(64 - log),
		shards: make([]shard, 1<<log),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[ID]int64)
	}
	return s
}

// Shards is the number of shards in use.
func (s *ShardedStore) Shards() int { return len(s.shards) }

func (s *ShardedStore) shard(id ID) *shard {
	if s.shift == 64 { // one shard
		return &s.shards[0]
	}
	// Fibonacci hashing: the multiply spreads every input bit into the top bits, so
	// IPv4 viewers (whose first ten bytes are all the same) still spread evenly.
	h := binary.LittleEndian.Uint64(id[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(id[8:]), 31)
	return &s.shards[(h*0x9E3779B97F4A7C15)>>s.shift]
}

// Heartbeat records id in its shard. With no cap a known viewer costs one map
// assignment under its shard's lock; with a cap a new viewer reserves its place in the
// global count first and gives it back if the cap is full, so the cap holds exactly
// across shards.
func (s *ShardedStore) Heartbeat(id ID, now time.Time) Result {
	t := s.epoch.stamp(now)
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s.max > 0 {
		if _, ok := sh.m[id]; ok {
			sh.m[id] = t
			return Refreshed
		}
		if s.count.Add(1) > int64(s.max) {
			s.count.Add(-1)
			return Overflow
		}
		sh.m[id] = t
		return Added
	}
	n := len(sh.m)
	sh.m[id] = t
	if len(sh.m) == n {
		return Refreshed
	}
	s.count.Add(1)
	return Added
}

// Count reads the global count; it takes no lock.
func (s *ShardedStore) Count() int { return int(s.count.Load()) }

// Sweep scans the shards one after another, holding one shard's lock at a time.
func (s *ShardedStore) Sweep(cutoff time.Time) int {
	c := s.epoch.stamp(cutoff)
	evicted := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n := 0
		for id, seen := range sh.m {
			if seen <= c {
				delete(sh.m, id)
				n++
			}
		}
		sh.mu.Unlock()
		s.count.Add(int64(-n))
		evicted += n
	}
	return evicted
}
