package local

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxEvents bounds the event log (a crash loop restarting every 100 ms for an hour
// must not grow memory without end); later events still reach OnEvent.
const maxEvents = 10000

// EventLog records what happens to a topology's servers: each event is kept (up to
// maxEvents), logged (a crash as a warning) and passed to OnEvent. The supervisor here
// and testenv/containers' topology keep one each. Safe for concurrent use.
type EventLog struct {
	log     *slog.Logger
	noun    string // what a server is called in log messages: process, container
	key     string // the log attribute that names it
	onEvent func(Event)

	mu     sync.Mutex // protects events
	events []Event
}

// NewEventLog returns an empty log that writes to log as "<noun> <kind>" messages with
// the server's name under key, and calls onEvent (if set) for every event, from the
// emitter's goroutine.
func NewEventLog(log *slog.Logger, noun, key string, onEvent func(Event)) *EventLog {
	return &EventLog{log: log, noun: noun, key: key, onEvent: onEvent}
}

// Emit records that kind happened to the server called name.
func (l *EventLog) Emit(name string, kind EventKind, detail string) {
	e := Event{Time: time.Now(), Process: name, Kind: kind, Detail: detail}
	l.mu.Lock()
	if len(l.events) < maxEvents {
		l.events = append(l.events, e)
	}
	l.mu.Unlock()
	level := slog.LevelInfo
	if kind == EventCrashed {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, l.noun+" "+string(kind), l.key, name, "detail", detail)
	if l.onEvent != nil {
		l.onEvent(e)
	}
}

// Events returns what has happened so far, oldest first.
func (l *EventLog) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}
