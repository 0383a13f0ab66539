package loadgen

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCounterErrorIgnoresTheRunsEnd checks that the counter's answers are compared with
// the true count while viewers watch, and not once the swarm is stopping everyone: then
// the truth drops to zero in a moment while any counter forgets a viewer only after its
// expiry, and the gap says nothing about the counter.
func TestCounterErrorIgnoresTheRunsEnd(t *testing.T) {
	r := NewRecorder(prometheus.NewRegistry(), nil)
	for i := 0; i < 10; i++ {
		r.sessionStarted()
	}
	r.counterAnswered(7) // 3 short while watching: counted
	if got := r.counterMaxAbsErr; got != 3 {
		t.Fatalf("max abs error while watching = %d, want 3", got)
	}
	r.closing.Store(true)
	for i := 0; i < 10; i++ {
		r.sessionEnded(sessionStats{reason: reasonStopped})
	}
	r.counterAnswered(10) // an answer in flight at the end: truth is 0 now
	if got := r.counterMaxAbsErr; got != 3 {
		t.Fatalf("max abs error after the run's end = %d, want it unchanged at 3", got)
	}
	if r.counterAnswers != 2 {
		t.Fatalf("answers = %d, want both counted", r.counterAnswers)
	}
}
