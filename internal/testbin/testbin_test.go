package testbin

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

func TestStampedeBuildsAndRuns(t *testing.T) {
	bin := Stampede(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("stampede version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "stampede ") {
		t.Fatalf("unexpected version output %q", out)
	}
	if again := Stampede(t); again != bin {
		t.Fatalf("second call built again: %s vs %s", again, bin)
	}
}
