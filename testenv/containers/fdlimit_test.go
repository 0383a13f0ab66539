package containers

import (
	"strconv"
	"testing"
	"time"
)

// fdViewers is how many viewers play from one mirror: well past 256 open files (each
// viewer keeps its own connection), far below 65536.
const fdViewers = 400

// TestFDLimit is the fd-limit scenario scaled down, with the limit set the way the
// relay's machine set it: a container ulimit. mirror-1 gets nofile 256, mirror-2 65536
// (or the most the daemon grants); each serves fdViewers viewers in turn. With 256 the
// mirror runs out of descriptors — its stampede_mirror_emfile_total moves and viewers
// get errors; with 65536 nothing fails, and the counter, behind the proxy that names
// viewers, counts every one of them.
func TestFDLimit(t *testing.T) {
	needDocker(t)
	stream := []string{"--segment-duration", "1s", "--bitrate", "200k", "--window", "6"}
	topo := startTopology(t, Spec{
		Name:   "fdlimit",
		Origin: Role{Args: stream},
		Mirrors: []Role{
			{Limits: Limits{Nofile: 256}},
			{Limits: Limits{Nofile: 65536}},
		},
		Counter: &Role{},
	})
	m1, m2 := topo.Mirrors()[0], topo.Mirrors()[1]
	if m1.Nofile() != 256 {
		t.Fatalf("mirror-1's nofile is %d, want 256", m1.Nofile())
	}
	args := func(m *Service, extra ...string) []string {
		return append([]string{"--url", m.URL() + "/live/master.m3u8", "--viewers", strconv.Itoa(fdViewers),
			"--ramp", "4s", "--duration", "14s"}, extra...)
	}

	// 256 open files: EMFILE as the mirror saw it, and errors for the viewers.
	small := startViewers(t, "nofile-256", args(m1, "--heartbeat", "0")...).wait(t, 2*time.Minute)
	mm := metrics(t, m1.MetricsURL())
	emfile := sum(mm, "stampede_mirror_emfile_total")
	t.Logf("mirror-1 (nofile 256): max_fds %.0f, emfile %.0f (accept %.0f, dial %.0f), shed %.0f; viewers: %d errors %v, %d stalls",
		sum(mm, "stampede_mirror_max_fds"), emfile, sum(mm, "stampede_mirror_emfile_total", `op="accept"`),
		sum(mm, "stampede_mirror_emfile_total", `op="dial"`), sum(mm, "stampede_mirror_shed_total"),
		small.Errors.Total, nonZero(small.Errors.ByClass), small.Stalls.Count)
	if got := sum(mm, "stampede_mirror_max_fds"); got != 256 {
		t.Errorf("mirror-1 sees an open-files limit of %.0f, want the container's ulimit 256", got)
	}
	if emfile == 0 {
		t.Errorf("mirror-1 with nofile 256 recorded no EMFILE serving %d viewers", fdViewers)
	}
	if small.Errors.Total == 0 {
		t.Errorf("viewers of mirror-1 with nofile 256 saw no errors")
	}

	// 65536 open files: nothing runs out. Heartbeats go through the counter's proxy.
	big := startViewers(t, "nofile-65536", args(m2, "--counter", topo.CounterURL())...).wait(t, 2*time.Minute)
	mm = metrics(t, m2.MetricsURL())
	t.Logf("mirror-2 (nofile %d): max_fds %.0f, emfile %.0f; viewers: %d errors, %d stalls",
		m2.Nofile(), sum(mm, "stampede_mirror_max_fds"), sum(mm, "stampede_mirror_emfile_total"), big.Errors.Total, big.Stalls.Count)
	if got := sum(mm, "stampede_mirror_max_fds"); got != float64(m2.Nofile()) {
		t.Errorf("mirror-2 sees an open-files limit of %.0f, want %d", got, m2.Nofile())
	}
	if m2.Nofile() < 2*fdViewers {
		t.Errorf("mirror-2's nofile %d is too low for the comparison", m2.Nofile())
	}
	if got := sum(mm, "stampede_mirror_emfile_total"); got != 0 {
		t.Errorf("mirror-2 with nofile %d recorded %.0f EMFILE", m2.Nofile(), got)
	}
	if big.Errors.Total != 0 || big.Stalls.Count != 0 {
		t.Errorf("viewers of mirror-2 saw %d errors %v and %d stalls, want none", big.Errors.Total, nonZero(big.Errors.ByClass), big.Stalls.Count)
	}
	cm := metrics(t, topo.Counter().MetricsURL())
	seen := sum(cm, "stampede_counter_heartbeats_total", `result="new"`)
	t.Logf("counter: %.0f distinct viewers (new), %.0f refreshes; summary max |answer-truth| %d", seen,
		sum(cm, "stampede_counter_heartbeats_total", `result="refresh"`), big.Counter.MaxAbsError)
	if seen != fdViewers {
		t.Errorf("the counter saw %.0f distinct viewers, want %d (one per viewer address, named by the proxy)", seen, fdViewers)
	}
}
