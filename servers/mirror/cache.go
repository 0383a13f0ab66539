package mirror

import (
	"net/http"
	"time"
)

// object is one complete response as the cache keeps it. It is immutable once built, so
// any number of requests may write it out at once without locking.
type object struct {
	status  int
	header  http.Header // only relayed headers and Content-Length; values shared read-only
	body    []byte
	expires time.Time // fresh while now is before this
	// bypass marks a key whose response was too large to cache: requests for it stream
	// straight from the upstream until the marker expires.
	bypass bool
}

// entryOverhead approximates the bookkeeping bytes of one entry besides key and body, so
// that many tiny objects still count against CacheSize.
const entryOverhead = 256

func (o *object) size(key string) int64 {
	n := int64(len(o.body) + len(key) + entryOverhead)
	for k, vs := range o.header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v))
		}
	}
	return n
}

// entry is an object in the cache's LRU list. All fields are guarded by Server.mu.
type entry struct {
	key        string
	obj        *object
	size       int64
	prev, next *entry // LRU neighbours; the list's head is the most recently used
	// holdUntil: after a failed upstream fetch, stale copies are served without asking
	// the upstream again until then, so an outage is not hammered by every request.
	holdUntil time.Time
}

// lru is an intrusive doubly linked list of entries with a byte total. It is not safe
// for concurrent use: Server.mu guards it.
type lru struct {
	head, tail *entry
	bytes      int64
	count      int
}

func (l *lru) pushFront(e *entry) {
	e.prev, e.next = nil, l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
	if l.tail == nil {
		l.tail = e
	}
	l.bytes += e.size
	l.count++
}

func (l *lru) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
	l.bytes -= e.size
	l.count--
}

func (l *lru) moveToFront(e *entry) {
	if l.head == e {
		return
	}
	l.remove(e)
	l.pushFront(e)
}
