package mirror

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// isEMFILE reports whether err means this process (EMFILE) or the system (ENFILE) has no
// file descriptor left.
func isEMFILE(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// fdCounter counts this process's open descriptors. It keeps /proc/self/fd open and
// rereads it, so that the count still works when no descriptor is free — exactly when
// it matters.
type fdCounter struct {
	mu   sync.Mutex // protects dir and last
	dir  *os.File
	last float64
}

func newFDCounter() *fdCounter {
	c := &fdCounter{last: -1}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		c.dir = d
	}
	return c
}

// open returns the number of open descriptors, or the last known count (-1 if none)
// when it cannot be read.
func (c *fdCounter) open() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir == nil {
		d, err := os.Open("/proc/self/fd")
		if err != nil {
			return c.last
		}
		c.dir = d
	}
	if _, err := c.dir.Seek(0, io.SeekStart); err != nil {
		return c.last
	}
	names, err := c.dir.Readdirnames(-1)
	if err != nil {
		return c.last
	}
	c.last = float64(len(names))
	return c.last
}

func (c *fdCounter) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != nil {
		c.dir.Close()
		c.dir = nil
	}
}

// maxOpenFiles is the soft RLIMIT_NOFILE.
func maxOpenFiles() float64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return -1
	}
	return float64(lim.Cur)
}

// rateLog logs a recurring condition at most once per second, with how many repeats it
// swallowed in between: EMFILE comes in storms, and a log line per event would itself
// be a storm.
type rateLog struct {
	mu         sync.Mutex // protects next and suppressed
	next       time.Time
	suppressed int
}

func (r *rateLog) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	if now.Before(r.next) {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.suppressed = 0
	r.next = now.Add(time.Second)
	r.mu.Unlock()
	log.Warn(msg, append(args, "suppressed_since_last", n)...)
}
