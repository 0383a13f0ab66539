// Package testbin builds the stampede binary once per test process, for tests that must
// run a server as a child process (a crash that kills the process, an open-files limit,
// a topology of several processes).
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
	out  []byte
	dir  string
)

// Stampede returns the path of a freshly built stampede binary, built without the race
// detector and with CGO off (like `make build`), so that a child process behaves as the
// shipped binary does: `fatal error: concurrent map writes` is the runtime's own check and
// must not be pre-empted by the race detector. The build happens once per test process.
func Stampede(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		dir, err = os.MkdirTemp("", "stampede-testbin-")
		if err != nil {
			return
		}
		path = filepath.Join(dir, "stampede")
		cmd := exec.Command("go", "build", "-o", path, "github.com/stampede-live/stampede/cmd/stampede")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = moduleRoot()
		out, err = cmd.CombinedOutput()
	})
	if err != nil {
		tb.Fatalf("building stampede: %v\n%s", err, out)
	}
	return path
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func Cleanup() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// moduleRoot is the repository root, found from this source file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
