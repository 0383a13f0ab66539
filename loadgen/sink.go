package loadgen

import "time"

// sink is where a viewer reports what it observes. A swarm's viewers share its Recorder
// (histograms, series, /metrics); a viewer run alone by Watch reports to a watchSink that
// hands each measurement to the caller as it happens. Methods are called from the
// viewer's callbacks, concurrently, some while the viewer's mutex is held: they must not
// call back into the viewer.
type sink interface {
	sessionStarted()
	sessionEnded(s sessionStats)
	// request is one finished request to mirrors[mirror] (the counter for heartbeats);
	// aborted means the viewer was being stopped and the request was cut short.
	request(req *request, mirror int, res *response, aborted bool)
	stallBegan()
	// stallEnded: complete says a segment landed (false: the session ended first).
	stallEnded(d time.Duration, complete bool)
	startupTook(d time.Duration)
	liveLatency(d time.Duration)
	// lag is how late a timer fired.
	lag(d time.Duration)
	playedFor(d time.Duration)
	counterAnswered(n int64)
	mirrorSwitched()
	levelSwitched(up bool)
	resynced()
}

var _ sink = (*Recorder)(nil)
