package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/stampede-live/stampede/internal/serverkit"
)

// serverFlags are the flags every server subcommand (origin, mirror, counter) shares.
type serverFlags struct {
	listen string
	labels serverkit.Labels
	nofile uint64
	debug  bool
}

func (s *serverFlags) register(fs *flag.FlagSet, defaultListen string) {
	fs.StringVar(&s.listen, "listen", defaultListen, "address to listen on (host:port; port 0 picks a free one)")
	fs.Var(&s.labels, "label", "constant label on every metric, name=value (repeatable; e.g. run=..., tuning=...)")
	fs.Uint64Var(&s.nofile, "nofile", 0, "lower this process's open-files limit (soft and hard) to N; 0 keeps it")
	fs.BoolVar(&s.debug, "debug", false, "log at debug level")
}

// setup applies the process limits, configures logging, and opens the listener. It logs
// `listening addr=...` so a parent process can learn a port chosen with :0.
func (s *serverFlags) setup(role string) (net.Listener, *slog.Logger, error) {
	level := slog.LevelInfo
	if s.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("role", role)
	slog.SetDefault(log)
	if err := serverkit.LimitOpenFiles(s.nofile); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", s.listen, err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "labels", s.labels.String(), "nofile", s.nofile)
	return ln, log, nil
}
