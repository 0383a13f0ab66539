package mirrorbench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func TestParseWrk(t *testing.T) {
	t.Parallel()
	out := []byte("Running 5s test @ http://x\n  1 threads and 10 connections\n" +
		`{"duration_us":2000000,"requests":1000,"bytes":500000,"connect":1,"read":2,"write":0,"status":3,"timeout":4,"p50_us":1500,"p99_us":9000}` + "\n")
	tp, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if tp.ReqPerSec != 500 || tp.BytesPerSec != 250000 || tp.Errors != 10 || tp.P50Ms != 1.5 || tp.P99Ms != 9 {
		t.Fatalf("%+v", tp)
	}
	for _, bad := range []string{"", "Requests/sec: 100\n", `{"duration_us":0,"requests":1}`, `{"duration_us":x}`} {
		if _, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add(`{"duration_us":2000000,"requests":1000,"bytes":500000,"connect":0,"read":0,"write":0,"status":0,"timeout":0,"p50_us":1,"p99_us":2}`)
	f.Add("garbage\n{\"duration_us\":-5}")
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := parseWrk([]byte(s))
		if err == nil && math.IsNaN(tp.ReqPerSec) {
			t.Fatalf("NaN from %q", s)
		}
	})
}

func TestMediansPairMirrors(t *testing.T) {
	t.Parallel()
	r := &Result{Throughput: []Throughput{
		{Mirror: MirrorStampede, Kind: "playlist", Connections: 10, ReqPerSec: 100, Round: 1},
		{Mirror: MirrorNginx, Kind: "playlist", Connections: 10, ReqPerSec: 200, Round: 1},
		{Mirror: MirrorStampede, Kind: "playlist", Connections: 10, ReqPerSec: 300, Round: 2},
		{Mirror: MirrorNginx, Kind: "playlist", Connections: 10, ReqPerSec: 100, Round: 2},
		{Mirror: MirrorStampede, Kind: "playlist", Connections: 10, ReqPerSec: 900, Round: 3, Errors: 1},
		{Mirror: MirrorNginx, Kind: "playlist", Connections: 10, ReqPerSec: 150, Round: 3},
	}}
	m := r.Medians()
	if len(m) != 1 || m[0][0].ReqPerSec != 300 || m[0][1].ReqPerSec != 150 || m[0][0].Errors != 1 {
		t.Fatalf("%+v", m)
	}
	var b bytes.Buffer
	r.Print(&b)
	if !strings.Contains(b.String(), "2.00") {
		t.Fatalf("ratio 300/150 not printed:\n%s", b.String())
	}
}

// TestRunSmall runs the whole comparison at toy size: real origin, stampede child, real
// nginx, real wrk. It proves the bench works end to end, not how fast anything is.
func TestRunSmall(t *testing.T) {
	t.Parallel()
	res, err := Run(context.Background(), Config{
		Stampede: testbin.Stampede(t), Connections: []int{20}, Duration: time.Second, Rounds: 1,
		FlashCrowd: 50, OriginLatency: 20 * time.Millisecond, Threads: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Throughput) != 4 {
		t.Fatalf("throughput cases %d, want 4 (2 kinds × 2 mirrors)", len(res.Throughput))
	}
	for _, tp := range res.Throughput {
		if tp.Requests == 0 || tp.ReqPerSec <= 0 || tp.Errors != 0 {
			t.Errorf("%+v", tp)
		}
	}
	flash := map[string]Flash{}
	for _, f := range res.Flash {
		flash[f.Mirror] = f
		if f.Statuses["200"] != 50 {
			t.Errorf("%s: statuses %v", f.Mirror, f.Statuses)
		}
	}
	if n := flash[MirrorStampede].UpstreamRequests; n != 1 {
		t.Errorf("stampede made %d upstream requests for the flash crowd, want 1", n)
	}
	// nginx is reported, not judged; with the lock it should still be close to one.
	if n := flash[MirrorNginxLockOn].UpstreamRequests; n < 1 || n > 2 {
		t.Errorf("nginx with proxy_cache_lock made %d upstream requests, want 1 or 2", n)
	}
	if n := flash[MirrorStampedeNoMerge].UpstreamRequests; n < 2 {
		t.Errorf("stampede without coalescing made %d upstream requests; the herd was not reproduced", n)
	}
}
