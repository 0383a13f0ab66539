package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/stampede-live/stampede/servers/counter/load"
)

func init() {
	register(command{name: "counter-load", summary: "drive a viewer counter with heartbeats from many source IPs (vegeta)", run: runCounterLoad})
}

// loadFlagFor maps load.Config fields to the flags that set them.
var loadFlagFor = map[string]string{
	"URL": "--url", "Rate": "--rate", "RampTo": "--ramp-to", "Duration": "--duration",
	"Sources": "--sources", "FirstSource": "--first-source", "Timeout": "--timeout", "Workers": "--workers",
}

func runCounterLoad(ctx context.Context, args []string) error {
	fs := newFlagSet("counter-load", "--url URL --rate N [--ramp-to N] --duration D --sources N [--results FILE]", nil)
	var (
		cfg             load.Config
		first, results  string
		cpuProfile      string
		workers, maxWkr uint
	)
	fs.StringVar(&cfg.URL, "url", load.DefaultURL, "heartbeat URL of the counter")
	fs.IntVar(&cfg.Rate, "rate", load.DefaultRate, "heartbeats per second (the starting rate when ramping)")
	fs.IntVar(&cfg.RampTo, "ramp-to", 0, "ramp the rate linearly from --rate to this over --duration (0: constant rate)")
	fs.DurationVar(&cfg.Duration, "duration", load.DefaultDuration, "how long to attack")
	fs.IntVar(&cfg.Sources, "sources", load.DefaultSources, "distinct viewers: loopback source addresses (or ids with --ids), used round robin")
	fs.StringVar(&first, "first-source", load.DefaultFirstSource.String(), "first loopback source address; the rest count up from it")
	fs.BoolVar(&cfg.IDs, "ids", false, "name viewers with ?id=viewer-N from one address instead of distinct source addresses")
	fs.DurationVar(&cfg.Timeout, "timeout", load.DefaultTimeout, "timeout of one heartbeat")
	fs.BoolVar(&cfg.NoWarmup, "no-warmup", false, "measure from the first heartbeat, connection set-up included (default: one unmeasured heartbeat per viewer first)")
	fs.UintVar(&workers, "workers", load.DefaultWorkers, "initial vegeta workers")
	fs.UintVar(&maxWkr, "max-workers", load.DefaultMaxWorkers, "maximum vegeta workers (requests in flight)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the generator here (is the generator the limit?)")
	fs.StringVar(&results, "results", "", "write every result here in vegeta's encoding (for `vegeta report`, `vegeta plot`)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case cfg.Rate <= 0:
		return usageError("--rate must be > 0, got %d", cfg.Rate)
	case cfg.RampTo < 0:
		return usageError("--ramp-to must be >= 0, got %d", cfg.RampTo)
	case cfg.Duration <= 0:
		return usageError("--duration must be > 0, got %v", cfg.Duration)
	case cfg.Sources <= 0:
		return usageError("--sources must be > 0, got %d", cfg.Sources)
	case cfg.Timeout <= 0:
		return usageError("--timeout must be > 0, got %v", cfg.Timeout)
	case workers == 0 || maxWkr == 0 || workers > maxWkr:
		return usageError("--workers (%d) and --max-workers (%d) must be > 0, workers <= max-workers", workers, maxWkr)
	}
	cfg.Workers, cfg.MaxWorkers = uint64(workers), uint64(maxWkr)
	var err error
	if cfg.FirstSource, err = netip.ParseAddr(first); err != nil {
		return usageError("--first-source: %v", err)
	}
	if !cfg.IDs {
		// Each viewer holds at least one connection: check the open-files limit first
		// rather than failing thousands of dials with EMFILE.
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(cfg.Sources)+64 > lim.Cur {
			return usageError("--sources %d needs that many connections; the open-files limit is %d", cfg.Sources, lim.Cur)
		}
	}

	var out *bufio.Writer
	if results != "" {
		f, err := os.Create(results)
		if err != nil {
			return usageError("--results: %v", err)
		}
		defer f.Close()
		out = bufio.NewWriterSize(f, 1<<20)
		cfg.Results = out
	}
	if os.Getenv("GOGC") == "" {
		// The generator allocates a little per request and keeps almost nothing; a
		// rarer GC leaves more of the shared cores to the counter it measures.
		debug.SetGCPercent(400)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return usageError("--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, runErr := load.Run(ctx, cfg)
	var ce *load.ConfigError
	if errors.As(runErr, &ce) { // nothing was sent
		return usageError("%s: %v", loadFlagFor[ce.Field], ce.Err)
	}
	if rep == nil {
		return runErr
	}
	if out != nil {
		if err := out.Flush(); err != nil && runErr == nil {
			runErr = fmt.Errorf("writing %s: %w", results, err)
		}
	}
	if err := rep.WriteText(os.Stdout); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	switch {
	case rep.Interrupted: // Ctrl-C: what was measured is printed (and written) above
		return exitError{code: 130}
	case rep.Behind:
		return exitError{code: 1, err: load.ErrBehind}
	}
	return nil
}
