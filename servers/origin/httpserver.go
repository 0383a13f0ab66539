package origin

import (
	"log/slog"
	"net/http"
	"time"
)

// Limits of the http.Server NewHTTPServer returns.
const (
	// DefaultMaxHeaderBytes caps request headers (net/http answers 431 beyond it); a
	// player's requests carry well under 2 KiB.
	DefaultMaxHeaderBytes = 16 << 10
	// DefaultReadHeaderTimeout drops clients that trickle their headers in.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds one response; a viewer slower than a 3000k segment in
	// two minutes has long stalled anyway.
	DefaultWriteTimeout = 2 * time.Minute
	// DefaultIdleTimeout closes keep-alive connections idle this long.
	DefaultIdleTimeout = 2 * time.Minute
)

// NewHTTPServer returns an http.Server for h with the limits above; net/http's own
// errors (accept failures such as "too many open files") go to log at warning level.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
