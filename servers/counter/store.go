package counter

import (
	"fmt"
	"strings"
	"time"
)

// Store keeps the last-seen time of every tracked viewer. Implementations differ only in
// how they share their map between the request handlers and the sweeper; that difference
// is what the map-race scenario shows.
type Store interface {
	// Heartbeat records that viewer id was seen at now.
	Heartbeat(id ID, now time.Time) Result
	// Count is the number of tracked viewers. It never scans the map: every store keeps
	// the figure as it goes, so answering a heartbeat costs the same at 10 or 100,000
	// viewers.
	Count() int
	// Sweep removes every viewer last seen at or before cutoff and reports how many it
	// removed. A viewer seen at t is therefore gone after the first sweep at t+expire.
	Sweep(cutoff time.Time) (evicted int)
}

// Result says what a heartbeat did.
type Result uint8

const (
	// Refreshed: a tracked viewer's last-seen time moved forward.
	Refreshed Result = iota
	// Added: a new viewer is now tracked.
	Added
	// Overflow: a new viewer was not stored because the store already holds MaxViewers.
	Overflow
)

// String is the value of the `result` label on stampede_counter_heartbeats_total.
func (r Result) String() string {
	switch r {
	case Refreshed:
		return "refresh"
	case Added:
		return "new"
	case Overflow:
		return "overflow"
	}
	return fmt.Sprintf("Result(%d)", uint8(r))
}

// Store names accepted by NewStore and Config.Store.
const (
	// StoreUnsafe is a plain map with no lock. It exists only to reproduce the original
	// crash (`fatal error: concurrent map writes`); never serve viewers with it.
	StoreUnsafe = "unsafe"
	// StoreMutex is the original fix: one map behind one sync.Mutex.
	StoreMutex = "mutex"
	// StoreRWMutex lets known viewers refresh under a read lock; new viewers and the
	// sweep take the write lock.
	StoreRWMutex = "rwmutex"
	// StoreSharded splits viewers over Shards maps, each with its own mutex.
	StoreSharded = "sharded"
	// StoreSyncMap uses sync.Map with an atomic timestamp per viewer.
	StoreSyncMap = "syncmap"
)

// StoreNames lists every store, in the order the docs present them.
var StoreNames = []string{StoreUnsafe, StoreMutex, StoreRWMutex, StoreSharded, StoreSyncMap}

// StoreOptions are the knobs every store shares.
type StoreOptions struct {
	// MaxViewers caps tracked viewers; a heartbeat from a new viewer beyond it returns
	// Overflow and stores nothing. 0 means no cap.
	MaxViewers int
	// Shards is the shard count of the sharded store (rounded up to a power of two;
	// 0 means DefaultShards). Other stores ignore it.
	Shards int
	// Epoch is the origin of the stores' int64 timestamps; zero means time.Now() at
	// construction. Timestamps are kept as nanoseconds since Epoch, taken with
	// time.Time.Sub, so a store fed by the real clock measures silence on the monotonic
	// clock and a wall-clock step cannot expire every viewer at once.
	Epoch time.Time
}

// NewStore returns the store called name.
func NewStore(name string, opt StoreOptions) (Store, error) {
	if opt.MaxViewers < 0 {
		return nil, fmt.Errorf("MaxViewers must be >= 0, got %d", opt.MaxViewers)
	}
	if opt.Shards < 0 {
		return nil, fmt.Errorf("Shards must be >= 0, got %d", opt.Shards)
	}
	if opt.Epoch.IsZero() {
		opt.Epoch = time.Now()
	}
	switch name {
	case StoreUnsafe:
		return NewUnsafeStore(opt), nil
	case StoreMutex:
		return NewMutexStore(opt), nil
	case StoreRWMutex:
		return NewRWMutexStore(opt), nil
	case StoreSharded:
		return NewShardedStore(opt), nil
	case StoreSyncMap:
		return NewSyncMapStore(opt), nil
	}
	return nil, fmt.Errorf("unknown store %q (want one of %s)", name, strings.Join(StoreNames, ", "))
}

// epoch turns times into the int64 nanosecond stamps the stores keep: 8 bytes per
// viewer instead of a 24-byte time.Time with a pointer the GC would have to scan.
type epoch struct{ t time.Time }

func newEpoch(t time.Time) epoch {
	if t.IsZero() {
		t = time.Now()
	}
	return epoch{t}
}

func (e epoch) stamp(t time.Time) int64 { return int64(t.Sub(e.t)) }
