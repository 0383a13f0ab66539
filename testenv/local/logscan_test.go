package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLastWords(t *testing.T) {
	for _, tc := range []struct {
		name, log, want string
	}{
		// the Go runtime's throw, followed by every goroutine's stack
		{"go fatal", "level=INFO msg=listening\nfatal error: concurrent map writes\n\ngoroutine 7 [running]:\ninternal/runtime/maps.fatal(...)\n\t/usr/lib/go/src/runtime/panic.go:1058 +0x18\nmain.main()\n\t/x/main.go:12\nexit status 2\n",
			"fatal error: concurrent map writes"},
		// a panic
		{"go panic", "hello\npanic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/x/main.go:5 +0x1d\n",
			"panic: runtime error: index out of range [3] with length 3"},
		// the fatal error wins over a panic it follows
		{"fatal after panic", "panic: first\nfatal error: concurrent map read and map write\n", "fatal error: concurrent map read and map write"},
		// nginx
		{"nginx", "2024/01/01 [notice] 1#1: using the \"epoll\" event method\n2024/01/01 [emerg] 1#1: bind() to 127.0.1.2:80 failed (98: Address already in use)\n2024/01/01 [notice] 1#1: exiting\n",
			"2024/01/01 [emerg] 1#1: bind() to 127.0.1.2:80 failed (98: Address already in use)"},
		// nothing special: the last line
		{"plain", "starting\nstampede mirror: --upstream is required\n", "stampede mirror: --upstream is required"},
		{"empty", "", ""},
	} {
		path := filepath.Join(t.TempDir(), "x.log")
		os.WriteFile(path, []byte(tc.log), 0o644)
		if got := lastWords(path, 0); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}

	// Only the current run counts: an earlier run's fatal error is before the offset.
	path := filepath.Join(t.TempDir(), "x.log")
	first := "fatal error: concurrent map writes\n"
	os.WriteFile(path, []byte(first+"--- stampede supervisor: start 2\nsignal received, shutting down\n"), 0o644)
	if got := lastWords(path, int64(len(first))); got != "signal received, shutting down" {
		t.Errorf("second run: %q", got)
	}
	// Long lines are clipped.
	os.WriteFile(path, []byte("panic: "+strings.Repeat("x", 1000)+"\n"), 0o644)
	if got := lastWords(path, 0); len(got) > 310 {
		t.Errorf("unclipped: %d bytes", len(got))
	}
	if got := tail(path, 0, 10); len(got) > 10 {
		t.Errorf("tail %d bytes", len(got))
	}
}

// TestLastWordsOfAContainer: a container's log comes as text from Docker's API (no
// file, no supervisor lines); testenv/containers reads it with LastWords.
func TestLastWordsOfAContainer(t *testing.T) {
	for _, c := range []struct {
		log, want string
	}{
		// the runtime's fatal error wins over everything after it
		{"time=… msg=listening\nfatal error: concurrent map writes\n\ngoroutine 7 [running]:\nmain.main()\n\t/src/x.go:3 +0x1\n", "fatal error: concurrent map writes"},
		// a panic, with its stack skipped
		{"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/x.go:9 +0x2\nexit status 2\n", "panic: boom"},
		// a usage error: the last line that is not a stack
		{"msg=listening\nstampede counter: bad usage: --store: unknown store\n", "stampede counter: bad usage: --store: unknown store"},
		// nothing said
		{"", ""},
		// a very long line is clipped
		{strings.Repeat("x", 400) + "\n", strings.Repeat("x", 300) + "…"},
	} {
		if got := LastWords(strings.NewReader(c.log)); got != c.want {
			t.Errorf("LastWords(%q) = %q, want %q", c.log, got, c.want)
		}
	}
}

func FuzzLastWords(f *testing.F) {
	f.Add("fatal error: concurrent map writes\n")
	f.Add("panic: x\ngoroutine 1 [running]:\n")
	f.Add("2024/01/01 [emerg] 1#1: bind() failed\n")
	f.Add("\x00\xff\n\n")
	f.Fuzz(func(t *testing.T, log string) {
		got := LastWords(strings.NewReader(log))
		if len(got) > 300+len("…") {
			t.Fatalf("LastWords returned %d bytes", len(got))
		}
		if got != "" && !strings.Contains(log, strings.TrimSuffix(got, "…")) {
			t.Fatalf("LastWords(%q) = %q is not from the log", log, got)
		}
	})
}
