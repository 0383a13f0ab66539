package local

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestEventLog: every event reaches OnEvent and the logger (named as the owner says);
// the kept log stops at maxEvents.
func TestEventLog(t *testing.T) {
	var buf bytes.Buffer
	passed := 0
	l := NewEventLog(slog.New(slog.NewTextHandler(&buf, nil)), "container", "service", func(Event) { passed++ })
	l.Emit("mirror-1", EventCrashed, "signal: killed")
	if ev := l.Events(); len(ev) != 1 || ev[0].Process != "mirror-1" || ev[0].Kind != EventCrashed || ev[0].Detail != "signal: killed" {
		t.Fatalf("events %+v", ev)
	}
	if got := buf.String(); !strings.Contains(got, `level=WARN msg="container crashed" service=mirror-1 detail="signal: killed"`) {
		t.Errorf("log line %q", got)
	}
	for range maxEvents + 5 {
		l.Emit("origin", EventNote, "x")
	}
	if n := len(l.Events()); n != maxEvents {
		t.Errorf("%d events kept, want %d", n, maxEvents)
	}
	if passed != maxEvents+6 {
		t.Errorf("OnEvent saw %d events, want %d", passed, maxEvents+6)
	}
}
