package serverkit

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegistryStampsLabels(t *testing.T) {
	reg, r := NewRegistry(Labels{"run": "r1", "tuning": "t1"})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_test_total", Help: "test"})
	r.MustRegister(c)
	c.Inc()
	rec := httptest.NewRecorder()
	MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`stampede_test_total{run="r1",tuning="t1"} 1`, `process_open_fds{run="r1",tuning="t1"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestLabelsFlag(t *testing.T) {
	var l Labels
	for _, bad := range []string{"novalue", "=x", "1abc=x", "__x=y", "a-b=c"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if err := l.Set("run=a=b"); err != nil {
		t.Fatal(err)
	}
	if err := l.Set("tuning=x"); err != nil {
		t.Fatal(err)
	}
	if got := l.String(); got != "run=a=b,tuning=x" {
		t.Fatalf("String() = %q", got)
	}
}

func TestServeShutsDownOnContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", Healthz)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, &http.Server{Handler: mux}, ln, 0) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok\n" {
		t.Fatalf("healthz = %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}
