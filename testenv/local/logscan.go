package local

import (
	"bufio"
	"io"
	"os"
	"strings"
)

// maxScan bounds how much of one run's log lastWords reads: a Go crash with thousands
// of goroutines prints megabytes of stacks after the line that matters.
const maxScan = 64 << 20

// lastWords finds why a run ended (LastWords) in its log from offset on.
func lastWords(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	return LastWords(io.LimitReader(f, maxScan))
}

// LastWords finds why a run ended in its log, read from r. In order of preference:
// the Go runtime's "fatal error: …" (concurrent map writes, out of memory), a Go
// "panic: …", nginx's "[emerg]" or "[alert]" line, else the last line that is not part
// of a stack trace (nor the supervisor's own start line). The line is clipped to 300
// bytes.
func LastWords(r io.Reader) string {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var panicLine, nginxLine, last string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "fatal error: "):
			return clip(line)
		case strings.HasPrefix(line, "panic: ") && panicLine == "":
			panicLine = line
		case (strings.Contains(line, "[emerg]") || strings.Contains(line, "[alert]")) && nginxLine == "":
			nginxLine = line
		case strings.HasPrefix(line, "--- stampede supervisor:"):
		case isStackLine(line):
		default:
			last = line
		}
	}
	for _, s := range []string{panicLine, nginxLine, last} {
		if s != "" {
			return clip(s)
		}
	}
	return ""
}

// isStackLine recognises the lines of a Go traceback.
func isStackLine(l string) bool {
	return strings.HasPrefix(l, "goroutine ") || strings.HasPrefix(l, "created by ") ||
		strings.HasPrefix(l, "/") || strings.HasPrefix(l, "runtime.") || strings.HasPrefix(l, "main.") ||
		strings.HasPrefix(l, "exit status ") || strings.Contains(l, ".go:") ||
		strings.HasPrefix(l, "[signal ") || strings.HasPrefix(l, "rax ") || strings.HasPrefix(l, "pc=")
}

func clip(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// tail returns up to n bytes from the end of path, not before offset, starting at a
// line boundary.
func tail(path string, offset int64, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	start := max(offset, st.Size()-n)
	buf := make([]byte, st.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return ""
	}
	s := string(buf)
	if start > offset {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimRight(s, "\n")
}
