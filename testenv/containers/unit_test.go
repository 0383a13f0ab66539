package containers

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-live/stampede/testenv/local"
)

// These tests need no Docker daemon.

func TestHasFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--epoch", "x"}, true},             // separate value
		{[]string{"-epoch=x"}, true},                 // one dash, joined value
		{[]string{"--epochs", "x"}, false},           // a longer name
		{[]string{"--label", "epoch=1"}, false},      // a value that looks like name=value
		{[]string{"--window", "6", "--epoch"}, true}, // last
	} {
		if got := hasFlag(c.args, "epoch"); got != c.want {
			t.Errorf("hasFlag(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestOrphaned(t *testing.T) {
	host, _ := os.Hostname()
	gone := deadPid(t)
	for _, c := range []struct {
		owner string
		want  bool
	}{
		{host + "/" + strconv.Itoa(os.Getpid()), false}, // this process lives
		{host + "/" + strconv.Itoa(gone), true},         // a process that exited
		{"elsewhere/" + strconv.Itoa(gone), false},      // another host: not ours to judge
		{"garbage", false},                              // malformed
		{host + "/0", false},                            // no pid
	} {
		if got := orphaned(c.owner, host); got != c.want {
			t.Errorf("orphaned(%q) = %v, want %v", c.owner, got, c.want)
		}
	}
}

// deadPid is the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid
	p.Wait()
	if !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		t.Skip("the pid was reused at once")
	}
	return pid
}

func TestLowerNofile(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("OCI runtime create failed: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted")
	if n, ok := lowerNofile(refused, lim.Max+1000); !ok || n != lim.Max {
		t.Errorf("a refused nofile above the hard limit: got %d %v, want %d true", n, ok, lim.Max)
	}
	if _, ok := lowerNofile(refused, lim.Max); ok {
		t.Errorf("a refused nofile at the hard limit cannot be lowered further")
	}
	if _, ok := lowerNofile(errors.New("port is already allocated"), lim.Max+1000); ok {
		t.Errorf("another error must not lower nofile")
	}
}

func TestPlanFaults(t *testing.T) {
	up := &netHandle{role: netUpstream}
	svc := func(name string, onUp bool) *Service {
		s := &Service{name: name}
		if onUp {
			s.nets = []attachment{{net: up, aliases: []string{name}}}
		}
		return s
	}
	topo := &Topology{origin: svc("origin", true), mirrors: []*Service{svc("mirror-1", true)}, counter: svc("counter", false)}
	for _, c := range []struct {
		faults []local.Fault
		err    string // "" when the plan is valid
		steps  []string
	}{
		// a partition with an end heals; steps come out in time order
		{[]local.Fault{{At: 5 * time.Second, Action: local.FaultKill, Target: "origin"},
			{At: time.Second, Until: 3 * time.Second, Action: FaultPartition, Target: "mirror-1"}}, "", []string{"partition", "heal", "kill"}},
		// stop with an end pauses and unpauses
		{[]local.Fault{{At: time.Second, Until: 2 * time.Second, Action: local.FaultStop, Target: "counter"}}, "", []string{"pause", "unpause"}},
		// delay needs a proxy the containers do not have
		{[]local.Fault{{At: time.Second, Action: local.FaultDelay, Target: "mirror-1", Delay: time.Second}}, "no proxy", nil},
		// an unknown target is refused before anything runs
		{[]local.Fault{{At: time.Second, Action: local.FaultKill, Target: "mirror-9"}}, `no service "mirror-9"`, nil},
		// the counter is not on the upstream network
		{[]local.Fault{{At: time.Second, Action: FaultPartition, Target: "counter"}}, "not on the upstream network", nil},
		// kill takes no end
		{[]local.Fault{{At: time.Second, Until: 2 * time.Second, Action: local.FaultKill, Target: "origin"}}, "does not take an end", nil},
		// until before at
		{[]local.Fault{{At: 2 * time.Second, Until: time.Second, Action: local.FaultStop, Target: "origin"}}, "is not after", nil},
		// an unknown action
		{[]local.Fault{{At: time.Second, Action: "explode", Target: "origin"}}, "unknown action", nil},
	} {
		steps, err := topo.plan(c.faults)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("plan(%+v) error %v, want %q", c.faults, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("plan(%+v): %v", c.faults, err)
			continue
		}
		var names []string
		for _, s := range steps {
			names = append(names, s.Name)
		}
		if strings.Join(names, ",") != strings.Join(c.steps, ",") {
			t.Errorf("plan(%+v) steps %v, want %v", c.faults, names, c.steps)
		}
	}
}

func TestFromLocal(t *testing.T) {
	base := local.TopologyConfig{
		LogDir: "/tmp/x", Labels: map[string]string{"run": "r"},
		Origin:  local.ServerSpec{Args: []string{"--window", "6"}, Nofile: 4096},
		Mirrors: []local.MirrorSpec{{ServerSpec: local.ServerSpec{Nofile: 1024, GOMAXPROCS: 1}}},
		Counter: &local.ServerSpec{Args: []string{"--store", "unsafe"}, Restart: local.RestartOnCrash},
	}
	spec, err := FromLocal(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Origin.Limits.Nofile != 4096 || spec.Mirrors[0].Limits.Nofile != 1024 || spec.Mirrors[0].GOMAXPROCS != 1 ||
		spec.Counter == nil || spec.Counter.Restart != local.RestartOnCrash || spec.Labels["run"] != "r" || spec.LogDir != "/tmp/x" {
		t.Errorf("FromLocal lost settings: %+v", spec)
	}
	for _, c := range []struct {
		change func(*local.TopologyConfig)
		err    string
	}{
		// nginx mirrors are not in the image
		{func(tc *local.TopologyConfig) { tc.Mirrors[0].Kind = local.MirrorNginx }, "Mirrors[0].Kind"},
		// round trips need the local proxies
		{func(tc *local.TopologyConfig) { tc.Mirrors[0].UpstreamRTT = time.Millisecond }, "Mirrors[0]: added round trips"},
		{func(tc *local.TopologyConfig) { tc.OriginRTT = time.Millisecond }, "OriginRTT"},
		{func(tc *local.TopologyConfig) { tc.OriginUplink = 1e6 }, "OriginUplink"},
	} {
		tc := base
		tc.Mirrors = append([]local.MirrorSpec(nil), base.Mirrors...)
		c.change(&tc)
		if _, err := FromLocal(tc, nil); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("FromLocal: error %v, want one naming %s", err, c.err)
		}
	}
}

func TestStartTopologyValidates(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		err  string
	}{
		{Spec{Mirrors: []Role{{}}}, "Spec.Image is required"},
		{Spec{Image: &Image{}}, "at least one mirror"},
		{Spec{Image: &Image{}, Mirrors: []Role{{Limits: Limits{CPUs: -1}}}}, "mirror-1: Limits.CPUs"},
		{Spec{Image: &Image{}, Mirrors: []Role{{}}, Origin: Role{Limits: Limits{Memory: 1 << 20}}}, "origin: Limits.Memory"},
		{Spec{Image: &Image{}, Mirrors: []Role{{}}, Counter: &Role{Env: []string{"NOEQUALS"}}}, "counter: Env"},
		{Spec{Image: &Image{}, Mirrors: []Role{{}}, Name: "bad name"}, "Spec.Name"},
	} {
		_, err := StartTopology(context.Background(), c.spec)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("StartTopology(%+v): %v, want an error naming %q", c.spec, err, c.err)
		}
	}
}

func TestCheckStatic(t *testing.T) {
	if err := checkStatic("/bin/true"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("checkStatic(/bin/true) = %v, want a refusal naming CGO_ENABLED=0", err)
	}
	if err := checkStatic("/etc/hostname"); err == nil || !strings.Contains(err.Error(), "not a linux executable") {
		t.Errorf("checkStatic(a text file) = %v", err)
	}
}
