// Package load drives a viewer counter with heartbeats using vegeta's attack engine
// (github.com/tsenart/vegeta/v12/lib): a constant or linearly ramping request rate,
// spread over many distinct viewers. Each viewer is a loopback source address
// (127.x.y.z) with its own keep-alive connection, the way each browser tab of the
// original crowd came from its own IP; or, for a counter that is not on loopback, an
// explicit ?id=. Results come back as vegeta's own types, so the text report is
// vegeta's and the results file (vegeta's gob encoding) works with `vegeta report` and
// `vegeta plot`.
package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/stampede-live/stampede/servers/counter"
)

// Defaults for Config; the CLI flags point at these.
const (
	// DefaultURL is the heartbeat URL of a counter started with its defaults.
	DefaultURL = "http://" + counter.DefaultListen + "/api/viewers"
	// DefaultRate is 25,000 heartbeats/s: 25 times the ~1,000 requests/s the original
	// counter peaked at.
	DefaultRate = 25_000
	// DefaultDuration of an attack.
	DefaultDuration = 30 * time.Second
	// DefaultSources is the original crowd: 5,000 viewers, each its own address.
	DefaultSources = 5000
	// DefaultTimeout for one heartbeat (vegeta's default is 30 s; a heartbeat that takes
	// 10 s has failed as far as a viewer is concerned).
	DefaultTimeout = 10 * time.Second
	// DefaultWorkers is vegeta's initial worker count; vegeta adds workers when they are
	// all busy, up to MaxWorkers, so the rate stays open-model.
	DefaultWorkers = 64
	// DefaultMaxWorkers bounds in-flight requests (and so connections per viewer).
	DefaultMaxWorkers = 10_000
)

// DefaultFirstSource is the first source address; later viewers count up from it,
// skipping addresses ending in .0 and .255.
var DefaultFirstSource = netip.MustParseAddr("127.1.0.1")

// Config describes one attack.
type Config struct {
	// URL is the heartbeat URL, e.g. http://127.0.0.1:8082/api/viewers.
	URL string
	// Rate is heartbeats per second (at the start, when ramping); DefaultRate when 0.
	Rate int
	// RampTo, when > 0, makes the rate rise (or fall) linearly from Rate to RampTo over
	// Duration (vegeta's LinearPacer).
	RampTo int
	// Duration of the attack; DefaultDuration when 0.
	Duration time.Duration
	// Sources is the number of distinct viewers; DefaultSources when 0.
	Sources int
	// FirstSource is the first loopback source address; DefaultFirstSource when unset.
	FirstSource netip.Addr
	// IDs identifies viewers by ?id=viewer-N instead of by source address, all from one
	// address (the only way to name many viewers to a counter that is not on loopback).
	IDs bool
	// Timeout for one heartbeat; DefaultTimeout when 0.
	Timeout time.Duration
	// Workers and MaxWorkers: vegeta's initial and maximum workers (defaults above).
	Workers, MaxWorkers uint64
	// Results, when set, receives every result in vegeta's gob encoding.
	Results io.Writer
	// NoWarmup skips the warm-up: by default every viewer sends one heartbeat (at Rate,
	// in its own vegeta attack, left out of the figures) before the measured attack,
	// so the measurement is of viewers already watching — connected and counted —
	// rather than of 5,000 connections being opened in its first second.
	NoWarmup bool
}

// Report is what an attack measured.
type Report struct {
	Metrics vegeta.Metrics
	// Expected is the number of heartbeats the pacer should have sent in the time the
	// attack ran; Sent is how many it did.
	Expected, Sent uint64
	// Behind is true when the generator sent fewer than 95% of Expected: it could not
	// keep its schedule (too little CPU, or every worker waiting on a slow counter), so
	// the requests it did send were not an open-model load and their latencies
	// understate what the asked-for rate would have met. Such a run is invalid.
	Behind bool
	// Sources is the number of distinct viewers used; First and Last are the first and
	// last source addresses (unset in IDs mode).
	Sources     int
	First, Last netip.Addr
	// LastViewers and MaxViewers are the counts the counter answered, last and largest.
	LastViewers, MaxViewers int
	// Interrupted is true when the context ended the attack early.
	Interrupted bool
	// Warmup and WarmupErrors count the warm-up heartbeats (not in Metrics).
	Warmup, WarmupErrors uint64
	cfg                  Config
}

// BehindFraction: sending fewer than this share of the expected requests marks a run
// invalid.
const BehindFraction = 0.95

// Run attacks cfg.URL and returns what it measured. A context that ends early stops the
// attack; what was measured until then is still returned (with Interrupted set).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	rep := &Report{cfg: cfg, Sources: cfg.Sources}

	var client *http.Client
	var targeter vegeta.Targeter
	if cfg.IDs {
		targeter = idTargeter(cfg.URL, cfg.Sources)
		client = &http.Client{Transport: newTransport(), Timeout: cfg.Timeout}
	} else {
		srcs, err := sourceAddrs(cfg.FirstSource, cfg.Sources)
		if err != nil {
			return nil, &ConfigError{"Sources", err}
		}
		rep.First, rep.Last = srcs[0], srcs[len(srcs)-1]
		targeter = vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: cfg.URL})
		client = &http.Client{Transport: newSourceTransport(srcs, cfg.Timeout)} // the transport enforces Timeout
	}
	defer client.CloseIdleConnections()

	pacer, expected := pace(cfg)
	// One Attacker per attack: vegeta closes its stop channel when an attack ends, so an
	// Attacker cannot run a second one. vegeta.Client replaces the whole http.Client
	// (timeout included), so no option that edits vegeta's own client may follow it.
	atk := vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.Workers(cfg.Workers),
		vegeta.MaxWorkers(cfg.MaxWorkers),
		vegeta.Redirects(vegeta.NoFollow),
	)
	if !cfg.NoWarmup {
		warmup(ctx, rep, vegeta.NewAttacker(
			vegeta.Client(client),
			vegeta.Workers(cfg.Workers),
			vegeta.MaxWorkers(cfg.MaxWorkers),
			vegeta.Redirects(vegeta.NoFollow),
		), targeter, cfg)
		if rep.Interrupted {
			rep.Metrics.Close()
			return rep, nil
		}
	}
	var enc vegeta.Encoder
	if cfg.Results != nil {
		enc = vegeta.NewEncoder(cfg.Results)
	}
	started := time.Now()
	results := atk.Attack(targeter, pacer, cfg.Duration, "counter")
	var encErr error
	drain(ctx, rep, atk, results, func(res *vegeta.Result) {
		rep.Metrics.Add(res)
		if n, ok := viewersIn(res.Body); ok {
			rep.LastViewers = n
			rep.MaxViewers = max(rep.MaxViewers, n)
		}
		if enc != nil && encErr == nil {
			encErr = enc.Encode(res)
		}
	})
	rep.Metrics.Close()
	ran := time.Since(started)
	if ran > cfg.Duration {
		ran = cfg.Duration
	}
	rep.Sent = rep.Metrics.Requests
	rep.Expected = expected(ran)
	rep.Behind = !rep.Interrupted && float64(rep.Sent) < BehindFraction*float64(rep.Expected)
	if encErr != nil {
		return rep, fmt.Errorf("writing results: %w", encErr)
	}
	return rep, nil
}

// ConfigError is an invalid Config field; Run returns it before sending anything.
type ConfigError struct {
	Field string // the Config field, e.g. "Rate"
	Err   error
}

func (e *ConfigError) Error() string { return "load: Config." + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(field, format string, a ...any) error {
	return &ConfigError{field, fmt.Errorf(format, a...)}
}

// warmup sends one heartbeat per viewer (the targeter and the transport both go round
// robin, so Sources hits reach every viewer once) and counts them apart.
func warmup(ctx context.Context, rep *Report, atk *vegeta.Attacker, tr vegeta.Targeter, cfg Config) {
	p := batchPacer{start: float64(cfg.Rate), tick: DefaultPacerTick, limit: uint64(cfg.Sources)}
	results := atk.Attack(tr, p, 0, "warmup")
	drain(ctx, rep, atk, results, func(res *vegeta.Result) {
		rep.Warmup++
		if res.Error != "" || res.Code < 200 || res.Code >= 400 {
			rep.WarmupErrors++
		}
	})
}

// drain hands every result of an attack to take until vegeta closes results. When ctx
// ends it marks the report interrupted, stops the attack and keeps draining: vegeta
// closes results once the requests in flight are back, and they are part of what was
// measured.
func drain(ctx context.Context, rep *Report, atk *vegeta.Attacker, results <-chan *vegeta.Result, take func(*vegeta.Result)) {
	done := ctx.Done()
	for {
		select {
		case <-done:
			rep.Interrupted = true
			atk.Stop()
			done = nil
		case res, ok := <-results:
			if !ok {
				return
			}
			take(res)
		}
	}
}

func withDefaults(cfg Config) (Config, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, configErr("URL", "%q: want http://host:port/api/viewers", cfg.URL)
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Duration == 0 {
		cfg.Duration = DefaultDuration
	}
	if cfg.Sources == 0 {
		cfg.Sources = DefaultSources
	}
	if !cfg.FirstSource.IsValid() {
		cfg.FirstSource = DefaultFirstSource
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = DefaultMaxWorkers
	}
	switch {
	case cfg.Rate < 0:
		return cfg, configErr("Rate", "must be > 0, got %d", cfg.Rate)
	case cfg.RampTo < 0:
		return cfg, configErr("RampTo", "must be >= 0, got %d", cfg.RampTo)
	case cfg.Duration < 0:
		return cfg, configErr("Duration", "must be > 0, got %v", cfg.Duration)
	case cfg.Sources < 0:
		return cfg, configErr("Sources", "must be > 0, got %d", cfg.Sources)
	case cfg.Timeout < 0:
		return cfg, configErr("Timeout", "must be > 0, got %v", cfg.Timeout)
	case cfg.Workers > cfg.MaxWorkers:
		return cfg, configErr("Workers", "%d must not exceed MaxWorkers (%d)", cfg.Workers, cfg.MaxWorkers)
	}
	if !cfg.IDs {
		if !cfg.FirstSource.Is4() || !cfg.FirstSource.IsLoopback() {
			return cfg, configErr("FirstSource", "%v: want an IPv4 loopback address (127.x.y.z)", cfg.FirstSource)
		}
		if u.Scheme != "http" {
			return cfg, configErr("URL", "%q: distinct source addresses are supported over plain http only; use IDs for https", cfg.URL)
		}
		if !loopbackHost(u.Hostname()) {
			return cfg, configErr("URL", "%q: distinct source addresses need a loopback target (127.x.y.z or localhost); use IDs for another host", cfg.URL)
		}
	}
	return cfg, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().Is4() && a.IsLoopback()
}

// pace returns the attack's pacer and the number of hits it should have sent after a
// given time (the integral of its rate).
func pace(cfg Config) (vegeta.Pacer, func(time.Duration) uint64) {
	rate, slope := float64(cfg.Rate), 0.0
	if cfg.RampTo > 0 {
		slope = float64(cfg.RampTo-cfg.Rate) / cfg.Duration.Seconds()
	}
	p := batchPacer{start: rate, slope: slope, tick: DefaultPacerTick}
	return p, func(d time.Duration) uint64 { return uint64(math.Max(0, p.due(d))) }
}

// DefaultPacerTick is the largest batch of the schedule released at once.
const DefaultPacerTick = time.Millisecond

// batchPacer is vegeta's constant and linear pacing (rate = start + slope·t) with one
// change: it never sleeps for less than tick, releasing whatever fell due meanwhile in
// one go. vegeta's own pacers sleep before every hit; at 25,000 heartbeats a second
// that is a 40 µs sleep 25,000 times a second, and on a shared two-core machine those
// timer wake-ups cost the generator more CPU than the requests. The schedule is the
// same open-model schedule, independent of how the counter answers; hits leave at most
// one tick late, and each result's timestamp is when it was actually sent.
type batchPacer struct {
	start, slope float64 // hits/s at t=0, and its change per second
	tick         time.Duration
	limit        uint64 // stop after this many hits; 0: no limit
}

var _ vegeta.Pacer = batchPacer{}

// due is the number of hits the schedule has asked for by elapsed.
func (p batchPacer) due(elapsed time.Duration) float64 {
	x := elapsed.Seconds()
	return p.start*x + p.slope*x*x/2
}

// Rate is the schedule's instantaneous rate, in hits per second.
func (p batchPacer) Rate(elapsed time.Duration) float64 {
	return p.start + p.slope*elapsed.Seconds()
}

// Pace says to send now while hits are due, and otherwise to sleep until the next hit
// is due, but never less than tick.
func (p batchPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if p.limit > 0 && hits >= p.limit {
		return 0, true
	}
	due := p.due(elapsed)
	if float64(hits) < due {
		return 0, false
	}
	wait := p.tick
	if r := p.Rate(elapsed); r > 0 {
		if w := time.Duration((float64(hits+1) - due) / r * float64(time.Second)); w > wait {
			wait = w
		}
	}
	return wait, false
}

// sourceAddrs lists n loopback source addresses from first, skipping .0 and .255.
func sourceAddrs(first netip.Addr, n int) ([]netip.Addr, error) {
	b := first.As4()
	if left := 1<<24 - (int(b[1])<<16 | int(b[2])<<8 | int(b[3])); n > left {
		return nil, fmt.Errorf("%d source addresses from %v run out of 127.0.0.0/8", n, first)
	}
	out := make([]netip.Addr, 0, n)
	a := first
	for len(out) < n {
		if !a.IsValid() || !a.IsLoopback() {
			return nil, fmt.Errorf("%d source addresses from %v run out of 127.0.0.0/8", n, first)
		}
		if b := a.As4(); b[3] != 0 && b[3] != 255 {
			out = append(out, a)
		}
		a = a.Next()
	}
	return out, nil
}

// newTransport is the transport of IDs mode: all viewers from one address, over as many
// keep-alive connections as requests in flight.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: DefaultMaxWorkers, // never close a connection just to open another
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// idTargeter names viewers viewer-0 … viewer-(n-1) in turn with ?id=.
func idTargeter(base string, n int) vegeta.Targeter {
	sep := "?"
	if u, err := url.Parse(base); err == nil && u.RawQuery != "" {
		sep = "&"
	}
	var next atomic.Uint64
	return func(t *vegeta.Target) error {
		if t == nil {
			return vegeta.ErrNilTarget
		}
		i := (next.Add(1) - 1) % uint64(n)
		t.Method = http.MethodGet
		t.URL = base + sep + "id=viewer-" + strconv.FormatUint(i, 10)
		t.Header = nil
		t.Body = nil
		return nil
	}
}

// viewersIn reads N from a {"viewers":N} body without a JSON decoder (this runs once per
// result, tens of thousands of times a second).
func viewersIn(body []byte) (int, bool) {
	const key = `"viewers":`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(body[i+len(key):], " ")
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := strconv.Atoi(string(rest[:j]))
	if err != nil {
		return 0, false
	}
	return n, true
}

// WriteText writes vegeta's text report followed by the counter's view and the
// generator's verdict.
func (r *Report) WriteText(w io.Writer) error {
	if err := vegeta.NewTextReporter(&r.Metrics).Report(w); err != nil {
		return err
	}
	rate := strconv.Itoa(r.cfg.Rate) + "/s"
	if r.cfg.RampTo > 0 && r.cfg.RampTo != r.cfg.Rate {
		rate += " ramping to " + strconv.Itoa(r.cfg.RampTo) + "/s"
	}
	if r.cfg.IDs {
		fmt.Fprintf(w, "Viewers       [ids]                    %d (?id=viewer-0 … viewer-%d)\n", r.Sources, r.Sources-1)
	} else {
		fmt.Fprintf(w, "Viewers       [source addresses]       %d (%v … %v)\n", r.Sources, r.First, r.Last)
	}
	fmt.Fprintf(w, "Counter       [last, max]              %d, %d viewers\n", r.LastViewers, r.MaxViewers)
	if r.Warmup > 0 {
		fmt.Fprintf(w, "Warm-up       [heartbeats, errors]     %d, %d (one per viewer, before the above; not in its figures)\n", r.Warmup, r.WarmupErrors)
	}
	verdict := "ok"
	switch {
	case r.Interrupted:
		verdict = "interrupted: partial results"
	case r.Behind:
		verdict = fmt.Sprintf("BEHIND: sent %.1f%% of the schedule; the generator could not keep it (short of CPU or workers), so this is not an open-model measurement: run invalid",
			100*float64(r.Sent)/float64(max(r.Expected, 1)))
	}
	_, err := fmt.Fprintf(w, "Generator     [asked, sent]            %s over %v: %d expected, %d sent — %s\n",
		rate, r.cfg.Duration, r.Expected, r.Sent, verdict)
	return err
}

// ErrBehind is returned by callers that turn a Behind report into an error.
var ErrBehind = errors.New("load generator fell behind its schedule: run invalid")
