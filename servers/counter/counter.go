// Package counter is stampede's reference viewer counter: every viewer calls
// GET /api/viewers every few seconds, the server remembers when it last heard from each
// one, a sweeper forgets viewers silent for longer than the expiry, and every answer is
// the current count, {"viewers": N}.
//
// It is the service from the relay this project grows out of, which crash-looped with
// `fatal error: concurrent map writes` because its map had no lock. The map lives behind
// the small Store interface so that the original (StoreUnsafe) and its fixes (mutex,
// rwmutex, sharded, syncmap) can be run side by side.
//
// Who is a viewer: the remote address by default. Behind a proxy (the original sat
// behind Cloudflare), Config.TrustedProxies lets CF-Connecting-IP and X-Forwarded-For
// from those proxies name the viewer; from anyone else those headers are ignored. A
// client may also name itself with ?id=VALUE (1–64 characters of A-Z a-z 0-9 . _ ~ -),
// so that several viewers behind one NAT count separately. The value is taken as given:
// a client can claim any number of ids, which is why the store is capped
// (Config.MaxViewers); set Config.IgnoreIDParam on a counter that only trusts addresses.
package counter

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stampede-live/stampede/internal/clock"
	"github.com/stampede-live/stampede/internal/serverkit"
)

// Defaults for Config; the CLI flags point at these.
const (
	// DefaultListen is where `stampede counter` listens unless told otherwise.
	DefaultListen = "127.0.0.1:8082"
	// DefaultExpire: a viewer silent this long is dropped. Twice the 5 s heartbeat of
	// the original client, so one lost heartbeat does not drop a viewer.
	DefaultExpire = 10 * time.Second
	// DefaultSweep: how often the sweeper looks for silent viewers. A dropped viewer
	// leaves the count between Expire and Expire+Sweep after its last heartbeat.
	DefaultSweep = 5 * time.Second
	// DefaultStore is sharded rather than mutex (the original fix, which is fine for
	// the original crowd) for two reasons. Its sweep holds one shard, 1/64 of the
	// viewers, at a time, where the mutex store's sweep stops every heartbeat for a full
	// scan (milliseconds at 100,000 viewers: BenchmarkSweepStall); and one lock cannot
	// scale past a few cores, while 64 can. It costs the same 35 bytes per viewer.
	// On two cores both are far above any HTTP rate (BenchmarkHeartbeat).
	DefaultStore = StoreSharded
	// DefaultShards for the sharded store: enough that lock collisions are rare well
	// past 8 cores, few enough that 64 empty maps cost nothing.
	DefaultShards = 64
	// DefaultMaxViewers caps tracked viewers so that random or spoofed ids cannot grow
	// the map without bound: a million viewers is 35–70 MB of heap in the sharded store
	// (35 B per viewer measured at 100,000, up to twice that just after a map grows).
	DefaultMaxViewers = 1_000_000
)

// Config configures a counter. The zero value is valid: every zero field takes its
// default.
type Config struct {
	// Store is one of StoreNames; DefaultStore when empty.
	Store string
	// Expire is how long a viewer may stay silent before a sweep drops it
	// (DefaultExpire when 0).
	Expire time.Duration
	// Sweep is the interval between sweeps (DefaultSweep when 0).
	Sweep time.Duration
	// TrustedProxies are the peers whose CF-Connecting-IP / X-Forwarded-For headers
	// name the viewer. Empty: the headers are always ignored.
	TrustedProxies []netip.Prefix
	// IgnoreIDParam makes the counter ignore ?id= and identify viewers by address only.
	IgnoreIDParam bool
	// MaxViewers caps tracked viewers (DefaultMaxViewers when 0; negative: no cap).
	MaxViewers int
	// Shards is the sharded store's shard count (DefaultShards when 0).
	Shards int
	// Clock drives heartbeats and the sweeper; clock.Real when nil.
	Clock clock.Clock
	// Labels are constant labels on every metric (run, tuning).
	Labels serverkit.Labels
	// Logger receives the sweeper's debug lines; slog.Default() when nil.
	Logger *slog.Logger
}

// ConfigError is an invalid Config field.
type ConfigError struct {
	Field string // the Config field, e.g. "Expire"
	Err   error
}

func (e *ConfigError) Error() string { return "counter: Config." + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Server is a running counter: the store, its sweeper and the HTTP handler.
type Server struct {
	cfg     Config // with defaults applied
	store   Store
	clock   clock.Clock
	trusted trust
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	handler http.Handler

	closeOnce sync.Once
	done      chan struct{} // closed by Close: the sweeper stops
	swept     chan struct{} // closed when the sweeper has returned
}

// New validates cfg, builds the store and starts the sweeper. Call Close to stop it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == "" {
		cfg.Store = DefaultStore
	}
	if cfg.Expire == 0 {
		cfg.Expire = DefaultExpire
	}
	if cfg.Sweep == 0 {
		cfg.Sweep = DefaultSweep
	}
	if cfg.MaxViewers == 0 {
		cfg.MaxViewers = DefaultMaxViewers
	}
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	switch {
	case cfg.Expire < 0:
		return nil, &ConfigError{"Expire", fmt.Errorf("must be > 0, got %v", cfg.Expire)}
	case cfg.Sweep < 0:
		return nil, &ConfigError{"Sweep", fmt.Errorf("must be > 0, got %v", cfg.Sweep)}
	case cfg.Shards < 0:
		return nil, &ConfigError{"Shards", fmt.Errorf("must be > 0, got %d", cfg.Shards)}
	}
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, &ConfigError{"TrustedProxies", fmt.Errorf("invalid prefix %v", p)}
		}
	}
	storeMax := cfg.MaxViewers
	if storeMax < 0 {
		storeMax = 0 // the stores' "no cap"
	}
	clk := clock.Or(cfg.Clock)
	store, err := NewStore(cfg.Store, StoreOptions{MaxViewers: storeMax, Shards: cfg.Shards, Epoch: clk.Now()})
	if err != nil {
		return nil, &ConfigError{"Store", err}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	trusted := make(trust, len(cfg.TrustedProxies))
	for i, p := range cfg.TrustedProxies {
		trusted[i] = netip.PrefixFrom(normalize(p.Addr()), p.Bits()).Masked()
	}
	reg, r := serverkit.NewRegistry(cfg.Labels)
	s := &Server{
		cfg:     cfg,
		store:   store,
		clock:   clk,
		trusted: trusted,
		log:     log,
		reg:     reg,
		metrics: newMetrics(r, store, cfg.Store, storeMax),
		done:    make(chan struct{}),
		swept:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/viewers", s.serveViewers)
	mux.Handle("GET /metrics", serverkit.MetricsHandler(reg))
	mux.HandleFunc("GET /healthz", serverkit.Healthz)
	s.handler = mux
	go s.sweepLoop()
	return s, nil
}

// Handler serves GET /api/viewers, /metrics and /healthz.
func (s *Server) Handler() http.Handler { return s.handler }

// Store is the store in use (for tests and benchmarks of a running server).
func (s *Server) Store() Store { return s.store }

// Config is the configuration in use, with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Close stops the sweeper and waits for it. It does not stop an http.Server using the
// handler; the caller owns that.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	<-s.swept
	return nil
}

// sweepLoop sweeps every cfg.Sweep on the server's clock. The timer is re-armed after a
// sweep finishes, so a slow sweep delays the next instead of stacking up behind it.
func (s *Server) sweepLoop() {
	defer close(s.swept)
	t := s.clock.NewTimer(s.cfg.Sweep)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C():
		}
		s.sweepOnce()
		t.Reset(s.cfg.Sweep)
	}
}

func (s *Server) sweepOnce() {
	cutoff := s.clock.Now().Add(-s.cfg.Expire)
	start := time.Now() // real time: what the sweep cost, whatever clock drives it
	evicted := s.store.Sweep(cutoff)
	took := time.Since(start)
	s.metrics.sweepDuration.Observe(took.Seconds())
	s.metrics.evictions.Add(float64(evicted))
	s.log.Debug("sweep", "evicted", evicted, "viewers", s.store.Count(), "took", took)
}

// Response headers, allocated once: every answer carries them.
var (
	hdrJSON       = []string{"application/json"}
	hdrNoStore    = []string{"no-store"}
	hdrAnyOrigin  = []string{"*"}
	hdrAllow      = []string{"GET, HEAD, OPTIONS"}
	hdrPreflightT = []string{"86400"}
)

// serveViewers records a heartbeat and answers {"viewers": N}. It is CORS-open (any page
// may show the count) and never cached (a cached answer would skip the heartbeat).
func (s *Server) serveViewers(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	h["Cache-Control"] = hdrNoStore
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions: // CORS preflight
		h["Access-Control-Allow-Methods"] = hdrAllow
		h["Access-Control-Max-Age"] = hdrPreflightT
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
		}
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h["Allow"] = hdrAllow
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	id, err := s.identify(r)
	if err != nil {
		s.metrics.invalid.Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res := s.store.Heartbeat(id, s.clock.Now())
	s.metrics.heartbeats[res].Inc()
	h["Content-Type"] = hdrJSON
	buf := make([]byte, 0, 32)
	buf = append(buf, `{"viewers":`...)
	buf = strconv.AppendInt(buf, int64(s.store.Count()), 10)
	buf = append(buf, "}\n"...)
	_, _ = w.Write(buf)
}

// identify names the viewer of r: ?id= when given (and allowed), else its address.
func (s *Server) identify(r *http.Request) (ID, error) {
	if !s.cfg.IgnoreIDParam && r.URL.RawQuery != "" {
		v, found, err := idParam(r.URL.RawQuery)
		if err != nil {
			return ID{}, err
		}
		if found {
			return ParamID(v), nil
		}
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return ID{}, errors.New("cannot tell the viewer's address from " + strconv.Quote(r.RemoteAddr))
	}
	return AddrID(viewerAddr(peer.Addr(), r.Header, s.trusted)), nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header()["Content-Type"] = hdrJSON
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
