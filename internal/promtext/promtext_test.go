package promtext

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const exposition = `# TYPE stampede_mirror_requests_total counter
stampede_mirror_requests_total{result="hit"} 7
stampede_mirror_requests_total{result="stale"} 2
stampede_mirror_requests_total{result="miss"} 1
# TYPE stampede_mirror_client_connections gauge
stampede_mirror_client_connections 3
# TYPE loose untyped
loose{kind="a"} 0.5
loose{kind="b"} 0.25
# TYPE latency_seconds histogram
latency_seconds_bucket{le="+Inf"} 4
latency_seconds_sum 1.5
latency_seconds_count 4
`

func TestSum(t *testing.T) {
	fams, err := Parse(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		family string
		keep   func(map[string]string) bool
		want   float64
	}{
		{"every series of a counter", "stampede_mirror_requests_total", nil, 10},
		{"the series whose label is one of the values", "stampede_mirror_requests_total", LabelIn("result", "hit", "stale"), 9},
		{"no series matches", "stampede_mirror_requests_total", LabelIn("result", "gone"), 0},
		{"a gauge", "stampede_mirror_client_connections", nil, 3},
		{"untyped series", "loose", LabelIn("kind", "b"), 0.25},
		{"a histogram is not a value to add", "latency_seconds", nil, 0},
		{"a family the server does not have", "absent_total", nil, 0},
	} {
		if got := Sum(fams[tc.family], tc.keep); got != tc.want {
			t.Errorf("%s: Sum(%s) = %v, want %v", tc.name, tc.family, got, tc.want)
		}
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			fmt.Fprint(w, exposition)
		case "/garbage":
			fmt.Fprint(w, "this is { not metrics\n")
		default:
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	c := NewClient(5 * time.Second)
	ctx := context.Background()

	fams, err := Scrape(ctx, c, srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got := Sum(fams["stampede_mirror_client_connections"], nil); got != 3 {
		t.Errorf("connections %v, want 3", got)
	}
	// Errors name the URL, and what went wrong.
	if _, err := Scrape(ctx, c, srv.URL+"/down"); err == nil || !strings.Contains(err.Error(), "/down: 503") {
		t.Errorf("a 503: %v", err)
	}
	if _, err := Scrape(ctx, c, srv.URL+"/garbage"); err == nil || !strings.Contains(err.Error(), "GET "+srv.URL+"/garbage") {
		t.Errorf("garbage: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Scrape(cancelled, c, srv.URL+"/metrics"); err == nil {
		t.Error("a cancelled scrape succeeded")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(exposition)
	f.Add("x 1\nx 2\n")
	f.Add("# TYPE a counter\na{b=\"\\\"\"} NaN\n")
	f.Add("a{b=\"c\"} +Inf 123\n")
	f.Fuzz(func(t *testing.T, text string) {
		fams, err := Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		for name, fam := range fams {
			// A filter that keeps every series sums to what no filter does.
			all, kept := Sum(fam, nil), Sum(fam, func(map[string]string) bool { return true })
			if all != kept && !(math.IsNaN(all) && math.IsNaN(kept)) {
				t.Errorf("%s: %v with no filter, %v keeping everything", name, all, kept)
			}
			Sum(fam, LabelIn("kind", "segment")) // must not panic
		}
	})
}
