package containers

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// logsSince returns the container's output (stdout and stderr, interleaved per
// stream) since t, at most tail lines ("all" for everything).
func (s *Service) logsSince(ctx context.Context, t time.Time, tail string) string {
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: tail}
	if !t.IsZero() {
		opts.Since = t.Format(time.RFC3339Nano)
	}
	r, err := s.topo.d.cli.ContainerLogs(ctx, s.id, opts)
	if err != nil {
		return ""
	}
	defer r.Close()
	var buf bytes.Buffer
	stdcopy.StdCopy(&buf, &buf, r)
	return buf.String()
}

// logTail is the end of the current run's log, for error messages.
func (s *Service) logTail(ctx context.Context) string {
	s.mu.Lock()
	since := s.startedAt
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t := strings.TrimRight(s.logsSince(ctx, since, "30"), "\n")
	if t == "" {
		return "(" + s.name + "'s log is empty)"
	}
	return "last lines of " + s.name + "'s log:\n" + t
}

// saveLog writes the container's whole log to LogDir/<name>.log.
func (s *Service) saveLog(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := s.topo.d.cli.ContainerLogs(ctx, s.id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true})
	if err != nil {
		return fmt.Errorf("containers: %s's log: %w", s.name, err)
	}
	defer r.Close()
	f, err := os.Create(filepath.Join(s.topo.spec.LogDir, s.name+".log"))
	if err != nil {
		return fmt.Errorf("containers: %s's log: %w", s.name, err)
	}
	w := bufio.NewWriter(f)
	_, err = stdcopy.StdCopy(w, w, r)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("containers: %s's log: %w", s.name, err)
	}
	return nil
}
