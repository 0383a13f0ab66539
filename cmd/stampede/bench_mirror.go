package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stampede-live/stampede/servers/mirror/mirrorbench"
)

func init() {
	register(command{
		name:    "bench-mirror",
		summary: "compare the stampede mirror with a real nginx mirror: hit throughput and flash-crowd offload",
		run:     runBenchMirror,
	})
}

func runBenchMirror(ctx context.Context, args []string) error {
	fs := newFlagSet("bench-mirror", "[flags]", nil)
	cfg := mirrorbench.Config{}
	conns := joinConnCounts(mirrorbench.DefaultConnections)
	out := ""
	fs.StringVar(&conns, "connections", conns, "comma-separated keep-alive connection counts to measure")
	fs.DurationVar(&cfg.Duration, "duration", mirrorbench.DefaultDuration, "how long wrk measures each case")
	fs.IntVar(&cfg.Rounds, "rounds", mirrorbench.DefaultRounds, "measurements per case, alternating which mirror goes first (medians compared)")
	fs.IntVar(&cfg.Threads, "threads", mirrorbench.DefaultThreads, "wrk threads")
	fs.IntVar(&cfg.FlashCrowd, "flash", mirrorbench.DefaultFlashCrowd, "clients in the flash crowd (negative: skip)")
	fs.DurationVar(&cfg.OriginLatency, "origin-latency", mirrorbench.DefaultOriginLatency, "delay added to origin responses during the flash crowd")
	fs.BoolVar(&cfg.Pin, "pin", true, "pin the mirror under test to CPU 0 and wrk to CPU 1")
	fs.StringVar(&cfg.Wrk, "wrk", mirrorbench.DefaultWrk, "wrk executable")
	fs.StringVar(&out, "out", "", "also write the result as JSON into this directory (bench-mirror.json)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, f := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return usageError("--connections %q: want positive integers, comma-separated", conns)
		}
		cfg.Connections = append(cfg.Connections, n)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Stampede = self
	res, err := mirrorbench.Run(ctx, cfg)
	if res != nil {
		res.Print(os.Stdout)
		if out != "" {
			if werr := writeBenchMirrorJSON(filepath.Join(out, "bench-mirror.json"), res); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}

func joinConnCounts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func writeBenchMirrorJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
