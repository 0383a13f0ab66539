// Package serverkit holds the plumbing every stampede server shares: a Prometheus
// registry that stamps run/tuning labels on every metric, /healthz, and serving with a
// graceful shutdown. Servers stay usable as libraries; this package only saves each of
// them from writing the same forty lines.
package serverkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultShutdownGrace is how long Serve lets in-flight requests finish after its
// context ends before closing connections.
const DefaultShutdownGrace = 5 * time.Second

// Labels are constant labels added to every metric a server exports, so runs and
// tunings can be told apart (`run`, `tuning`) when several are scraped together.
type Labels map[string]string

// String renders labels as k=v,k=v in key order (for flags and logs).
func (l Labels) String() string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// Set parses one k=v pair; it makes *Labels a flag.Value usable as a repeated flag.
func (l *Labels) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want name=value", s)
	}
	if !validLabelName(k) {
		return fmt.Errorf("label %q: %q is not a valid Prometheus label name", s, k)
	}
	if *l == nil {
		*l = Labels{}
	}
	(*l)[k] = v
	return nil
}

func validLabelName(s string) bool {
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return !strings.HasPrefix(s, "__")
}

// NewRegistry returns a fresh registry (never the global one, so several servers can
// live in one test process) and a Registerer that adds labels to everything registered
// through it. The Go and process collectors are registered, which gives every server
// process_open_fds and process_max_fds.
func NewRegistry(labels Labels) (*prometheus.Registry, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(prometheus.Labels(labels), reg)
	r.MustRegister(collectors.NewGoCollector())
	r.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, r
}

// MetricsHandler serves reg in the Prometheus exposition format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// Healthz answers 200 "ok" to GET and HEAD.
func Healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// Serve runs srv on ln until ctx ends, then shuts down gracefully, giving in-flight
// requests up to grace (DefaultShutdownGrace when zero) before closing them.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// LimitOpenFiles lowers this process's open-files limit (soft and hard) to n. Go raises
// its soft limit to the hard limit at start-up, so reproducing "too many open files"
// in a Go server means lowering the hard limit itself, which any process may do.
func LimitOpenFiles(n uint64) error {
	if n == 0 {
		return nil
	}
	lim := syscall.Rlimit{Cur: n, Max: n}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("set open-files limit to %d: %w", n, err)
	}
	return nil
}
