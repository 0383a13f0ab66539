package containers

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/stampede-live/stampede/testenv/local"
)

// TestLimitsAndFaults starts a small relay with limits and exercises every fault on
// it: the limits reach the container (and the server sees them), the counter's proxy
// names viewers, pause hangs the origin while the mirror answers stale, kill and
// start keep the address, restart keeps the origin's clock, and a crash of the
// unsafe counter is recorded with the runtime's last words and restarted.
func TestLimitsAndFaults(t *testing.T) {
	needDocker(t)
	topo := startTopology(t, Spec{
		Name:   "faults",
		Labels: map[string]string{"run": "faults-test", "tuning": "limits"},
		Origin: Role{
			Args:       []string{"--segment-duration", "1s", "--bitrate", "200k"},
			Limits:     Limits{CPUs: 0.5, Memory: 64 << 20, Nofile: 1024},
			GOMAXPROCS: 1,
		},
		Mirrors: []Role{{Args: []string{"--stale-if-error", "300ms", "--upstream-timeout", "1s", "--playlist-ttl", "500ms"}}},
		Counter: &Role{Args: []string{"--store", "unsafe"}, GOMAXPROCS: 2, Restart: local.RestartOnCrash},
	})
	ctx := context.Background()
	origin, mirror, counter := topo.Origin(), topo.Mirrors()[0], topo.Counter()
	sampler := topo.NewSampler()

	t.Run("limits", func(t *testing.T) {
		insp, err := topo.d.cli.ContainerInspect(ctx, origin.ContainerID(), client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, c := insp.Container.HostConfig, insp.Container.Config
		var nofile int64
		for _, u := range h.Ulimits {
			if u.Name == "nofile" && u.Soft == u.Hard {
				nofile = u.Hard
			}
		}
		bind := h.PortBindings[mustPort("8080/tcp")]
		for _, c := range []struct {
			what      string
			got, want any
		}{
			{"NanoCPUs", h.NanoCPUs, int64(5e8)},
			{"Memory", h.Memory, int64(64 << 20)},
			{"MemorySwap (no swap)", h.MemorySwap, int64(64 << 20)},
			{"nofile ulimit", nofile, int64(1024)},
			{"read-only root", h.ReadonlyRootfs, true},
			{"tmpfs /tmp", strings.Contains(h.Tmpfs["/tmp"], "size="+DefaultTmpfsSize), true},
			{"published on", fmt.Sprint(bind), "[{127.0.0.1 " + portOf(origin.Addr()) + "}]"},
			{"user", c.User, "65534:65534"},
			{"DNS (nothing forwarded off the host)", fmt.Sprint(h.DNS), "[127.0.0.1]"},
			{"session label", c.Labels[LabelSession], Session()},
		} {
			if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
				t.Errorf("origin container %s = %v, want %v", c.what, c.got, c.want)
			}
		}
		// What the server itself sees.
		m := metrics(t, origin.MetricsURL())
		if got := sum(m, "process_max_fds"); got != 1024 {
			t.Errorf("the origin sees an open-files limit of %.0f, want 1024", got)
		}
		labelled := false
		for k := range m {
			labelled = labelled || strings.HasPrefix(k, "stampede_origin_") && strings.Contains(k, `run="faults-test"`) && strings.Contains(k, `tuning="limits"`)
		}
		if !labelled {
			t.Errorf("the origin's metrics do not carry the Spec's run and tuning labels")
		}
		if got := sum(m, "go_sched_gomaxprocs_threads"); got != 1 {
			t.Errorf("the origin runs with GOMAXPROCS %.0f, want the Role's 1", got)
		}
	})

	t.Run("counter-proxy", func(t *testing.T) {
		newViewers := func() float64 {
			return sum(metrics(t, counter.MetricsURL()), "stampede_counter_heartbeats_total", `result="new"`)
		}
		before := newViewers()
		for i := 1; i <= 3; i++ {
			heartbeat(t, fmt.Sprintf("127.42.0.%d", i), topo.CounterURL())
		}
		viaProxy := newViewers() - before
		for i := 1; i <= 3; i++ {
			heartbeat(t, fmt.Sprintf("127.43.0.%d", i), counter.URL())
		}
		direct := newViewers() - before - viaProxy
		t.Logf("3 viewers through the proxy: %.0f new; 3 viewers straight to the published port: %.0f new", viaProxy, direct)
		if viaProxy != 3 {
			t.Errorf("through the proxy the counter saw %.0f new viewers, want 3", viaProxy)
		}
		if direct != 1 {
			t.Errorf("straight to the published port the counter saw %.0f new viewers, want 1 (all come from the gateway); if this changed, the proxy may be unneeded", direct)
		}
	})

	t.Run("pause", func(t *testing.T) {
		path := mediaPath(t, origin.URL())
		if get(t, mirror.URL()+path) == "" {
			t.Fatal("the mirror serves no playlist before the fault")
		}
		staleBefore := sum(metrics(t, mirror.MetricsURL()), "stampede_mirror_requests_total", `result="stale"`)
		if err := origin.Pause(); err != nil {
			t.Fatal(err)
		}
		if !origin.Paused() || !origin.Running() {
			t.Errorf("after Pause: paused %v running %v", origin.Paused(), origin.Running())
		}
		hung := &http.Client{Timeout: time.Second}
		if resp, err := hung.Get(origin.URL() + path); err == nil {
			resp.Body.Close()
			t.Errorf("a paused origin answered %s", resp.Status)
		}
		// The mirror's copy expires after 500 ms; it then waits 300 ms on the hung
		// origin and answers stale. Poll until a stale answer is counted.
		deadline := time.Now().Add(15 * time.Second)
		for sum(metrics(t, mirror.MetricsURL()), "stampede_mirror_requests_total", `result="stale"`) == staleBefore {
			if get(t, mirror.URL()+path) == "" {
				t.Errorf("the mirror did not answer while the origin hung")
			}
			if time.Now().After(deadline) {
				t.Fatal("the mirror never answered stale while the origin hung")
			}
		}
		if err := origin.Resume(); err != nil {
			t.Fatal(err)
		}
		if get(t, origin.URL()+path) == "" {
			t.Errorf("the origin does not answer after Resume")
		}
	})

	t.Run("kill-start", func(t *testing.T) {
		url := mirror.URL()
		if err := mirror.Kill(); err != nil {
			t.Fatal(err)
		}
		ex := mirror.Exits()
		if mirror.Running() || len(ex) != 1 || !ex[0].Requested || ex[0].Signal != "killed" {
			t.Fatalf("after Kill: running %v, exits %+v; want one requested exit by SIGKILL", mirror.Running(), ex)
		}
		if _, err := healthClient.Get(url + "/healthz"); err == nil {
			t.Errorf("a killed mirror still answers")
		}
		if err := mirror.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if mirror.URL() != url || mirror.Runs() != 2 || get(t, url+"/healthz") == "" {
			t.Errorf("after Start: url %s (was %s), runs %d; want the same address, 2 runs, healthy", mirror.URL(), url, mirror.Runs())
		}
	})

	t.Run("restart-keeps-clock", func(t *testing.T) {
		path := mediaPath(t, origin.URL())
		before := segNum(lastSegment(t, origin.URL()+path))
		if err := origin.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		after := segNum(lastSegment(t, origin.URL()+path))
		if before <= 0 || after < before {
			t.Errorf("the origin's last segment went from %d to %d across a restart; want its live clock kept", before, after)
		}
		if c := origin.Crashes(); c != 0 {
			t.Errorf("a requested restart counted %d crashes", c)
		}
	})

	t.Run("crash-restart", func(t *testing.T) {
		heartbeat(t, "127.44.0.1", topo.CounterURL())
		before := sampler.Sample(ctx).Procs["counter"].Requests
		done := counter.Done()
		hammer(t, counter.URL(), done)
		deadline := time.After(60 * time.Second)
		for counter.Runs() < 2 || get(t, counter.URL()+"/healthz") == "" {
			select {
			case <-deadline:
				t.Fatalf("the counter was not restarted after its crash: runs %d, exits %+v", counter.Runs(), counter.Exits())
			case <-time.After(100 * time.Millisecond):
			}
		}
		ex := counter.Exits()
		if len(ex) == 0 || ex[0].Requested || !strings.Contains(ex[0].Fatal, "concurrent map writes") {
			t.Fatalf("exits %+v; want a crash with the runtime's fatal error: concurrent map writes", ex)
		}
		if counter.Crashes() != 1 {
			t.Errorf("crashes %d, want 1", counter.Crashes())
		}
		t.Logf("counter crash recorded: %s; restarted, run %d", ex[0], counter.Runs())
		heartbeat(t, "127.44.0.1", topo.CounterURL())
		after := sampler.Sample(ctx).Procs["counter"]
		if !after.Up || after.Requests < before+1 {
			t.Errorf("the sampler's counter total went from %.0f to %.0f (up %v) across the restart; want the runs added up", before, after.Requests, after.Up)
		}
	})

	t.Run("sampler", func(t *testing.T) {
		// The mirror restarted (kill-start): a miss, then hits, on its new run.
		path := mediaPath(t, origin.URL())
		for range 5 {
			get(t, mirror.URL()+path)
		}
		smp := sampler.Sample(ctx)
		for _, name := range []string{"origin", "mirror-1", "counter"} {
			f := smp.Procs[name]
			t.Logf("%s: up %v pid %d cpu %.2fs fds %d/%d requests %.0f hits %.0f upstream %.0f", name, f.Up, f.Pid, f.CPUSeconds, f.OpenFDs, f.MaxFDs, f.Requests, f.Hits, f.Upstream)
			if !f.Up || f.Pid == 0 || f.CPUSeconds <= 0 || f.Requests <= 0 || f.OpenFDs <= 0 {
				t.Errorf("%s's figures are not all measured: %+v", name, f)
			}
		}
		if f := smp.Procs["origin"]; f.MaxFDs != 1024 {
			t.Errorf("origin MaxFDs %d, want its ulimit 1024", f.MaxFDs)
		}
		if f := smp.Procs["mirror-1"]; f.Hits <= 0 || f.Upstream <= 0 {
			t.Errorf("mirror-1 hits %.0f upstream %.0f, want both", f.Hits, f.Upstream)
		}
	})
}

// heartbeat sends one heartbeat from source address src.
func heartbeat(t *testing.T, src, base string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
	}}
	resp, err := c.Get(base + "/api/viewers")
	if err != nil {
		t.Fatalf("heartbeat from %s: %v", src, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("heartbeat from %s: %s", src, resp.Status)
	}
}

// hammer sends heartbeats of fresh viewers from many goroutines until done closes:
// the unsafe store's map is written concurrently, and the runtime kills the process.
func hammer(t *testing.T, base string, done <-chan struct{}) {
	t.Helper()
	var wg sync.WaitGroup
	deadline := time.After(45 * time.Second)
	stop := make(chan struct{})
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 2 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(fmt.Sprintf("%s/api/viewers?id=w%d-%d", base, w, i))
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	select {
	case <-done:
	case <-deadline:
		t.Error("the unsafe counter did not crash under 16 concurrent writers in 45 s")
	}
	close(stop)
	wg.Wait()
}

// TestStartFailureRemovesEverything: a server that cannot start (a bad flag) fails
// StartTopology with its own words, and nothing of the topology remains.
func TestStartFailureRemovesEverything(t *testing.T) {
	needDocker(t)
	img := sharedImage.get(t)
	_, err := StartTopology(context.Background(), Spec{
		Image: img, Name: "badflag", Logger: discard(),
		Mirrors: []Role{{}},
		Counter: &Role{Args: []string{"--store", "bogus"}},
	})
	if err == nil || !strings.Contains(err.Error(), "exited before it was healthy") || !strings.Contains(err.Error(), `unknown store "bogus"`) {
		t.Fatalf("StartTopology with a bad counter flag: %v; want the counter's exit and its message", err)
	}
	t.Logf("error: %v", firstLine(err))
	left, err := FindSession(context.Background(), Session())
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Containers) != 0 || len(left.Networks) != 0 {
		t.Errorf("a failed start left %s", left)
	}
}

// TestSkipsWithoutDaemon runs this package's Docker tests against a daemon that does
// not exist: they must skip and say why, never pass silently.
func TestSkipsWithoutDaemon(t *testing.T) {
	if os.Getenv("STAMPEDE_CONTAINERS_CHILD") != "" {
		t.Skip("already the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^(TestFDLimit|TestPartition)$", "-test.v")
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix:///nonexistent/docker.sock", "STAMPEDE_CONTAINERS_CHILD=1", "STAMPEDE_REQUIRE_DOCKER=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suite without a daemon failed: %v\n%s", err, out)
	}
	for _, want := range []string{"--- SKIP: TestFDLimit", "--- SKIP: TestPartition", "no Docker daemon answers"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output without a daemon lacks %q:\n%s", want, out)
		}
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func mustPort(s string) network.Port { return network.MustParsePort(s) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestSweepOrphans: what a process of this host that no longer runs left in Docker is
// removed; what a live process (this one) owns is not.
func TestSweepOrphans(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	d, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	orphan := "orphan" + randomHex(4)
	mk := func(sess, own string) string {
		r, err := d.cli.NetworkCreate(ctx, "stampede-test-"+sess, client.NetworkCreateOptions{Driver: "bridge", Internal: true,
			Labels: map[string]string{LabelSession: sess, LabelOwner: own}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	mk(orphan, host+"/"+strconv.Itoa(deadPid(t)))
	mine := mk(Session(), owner())
	t.Cleanup(func() { d.cli.NetworkRemove(ctx, mine, client.NetworkRemoveOptions{}) })
	swept, err := SweepOrphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(swept, orphan) || slices.Contains(swept, Session()) {
		t.Errorf("swept %v; want the dead process's session %s and not this one's", swept, orphan)
	}
	if left, _ := FindSession(ctx, orphan); !left.Empty() {
		t.Errorf("the orphan's objects remain: %s", left)
	}
	if left, _ := FindSession(ctx, Session()); len(left.Networks) == 0 {
		t.Errorf("this process's network was swept")
	}
}
