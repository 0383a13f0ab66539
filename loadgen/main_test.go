package loadgen

import (
	"os"
	"testing"

	"github.com/stampede-live/stampede/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}
