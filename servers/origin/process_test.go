package origin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-live/stampede/internal/testbin"
)

// originProcess is `stampede origin` running as a child process.
type originProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed when the process has exited
	mu   sync.Mutex    // protects log
	log  strings.Builder
}

var listeningRE = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// startOrigin runs `stampede origin --listen 127.0.0.1:0 args...` with extra environment
// variables, waits for its "listening" line and stops it at cleanup.
func startOrigin(t testing.TB, env []string, args ...string) *originProcess {
	t.Helper()
	bin := testbin.Stampede(t)
	cmd := exec.Command(bin, append([]string{"origin", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &originProcess{cmd: cmd, done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		// SIGTERM first so an --ffmpeg origin removes its directory; SIGKILL if stuck.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case p.addr = <-addrc:
	case <-p.done:
		t.Fatalf("stampede origin exited before listening:\n%s", p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("stampede origin did not report its address:\n%s", p.logText())
	}
	return p
}

func (p *originProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// wait waits for the process to exit and returns its exit code.
func (p *originProcess) wait(t testing.TB, deadline time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(deadline):
		t.Fatalf("stampede origin still running after %v:\n%s", deadline, p.logText())
		return -1
	}
}

func fetch(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// TestCommandServesAndStopsOnSIGTERM runs the real binary: it serves the stream, and on
// SIGTERM lets a download it has started finish, then exits 0.
func TestCommandServesAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	p := startOrigin(t, nil, "--epoch", "-20s", "--renditions", "2", "--label", "run=test")
	base := "http://" + p.addr
	if m := fetch(t, base+"/live/master.m3u8"); !strings.Contains(m, "1500k/index.m3u8") {
		t.Fatalf("master:\n%s", m)
	}
	pl := parsePlaylist(t, []byte(fetch(t, base+"/live/1500k/index.m3u8")))
	if len(pl.segments) != DefaultWindow {
		t.Fatalf("with an epoch 20 s ago the playlist has %d segments, want %d", len(pl.segments), DefaultWindow)
	}
	if m := fetch(t, base+"/metrics"); !strings.Contains(m, `stampede_origin_requests_total{code="200",kind="master",run="test"} 1`) {
		t.Fatalf("metrics lack the labelled request count:\n%s", grepLines(m, "stampede_origin_requests_total"))
	}

	// Start a segment download, read its first packet, then send SIGTERM: the response
	// must still arrive whole. (Loopback buffers may already hold the rest of it; the
	// graceful path itself is serverkit.Serve's.)
	seg := "/live/1500k/" + strconv.Itoa(pl.segments[0]) + ".ts"
	resp, err := http.Get(base + seg)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 188)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("in-flight download cut by the shutdown: %v", err)
	}
	if got := int64(len(first) + len(rest)); got != resp.ContentLength {
		t.Fatalf("in-flight download got %d of %d bytes", got, resp.ContentLength)
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.logText())
	}
	if !strings.Contains(p.logText(), "msg=stopped") {
		t.Fatalf("no orderly stop in the log:\n%s", p.logText())
	}
}

// TestCommandStopsFFmpeg: SIGTERM to `stampede origin --ffmpeg` stops its ffmpeg too and
// removes ffmpeg's directory.
func TestCommandStopsFFmpeg(t *testing.T) {
	t.Parallel()
	needTool(t, "ffmpeg")
	p := startOrigin(t, nil, "--ffmpeg", "--segment-duration", "1s")
	var pid, dir string
	deadline := time.Now().Add(30 * time.Second)
	for pid == "" {
		if m := regexp.MustCompile(`msg="ffmpeg started" .*pid=(\d+) dir=(\S+)`).FindStringSubmatch(p.logText()); m != nil {
			pid, dir = m[1], m[2]
		} else if time.Now().After(deadline) {
			t.Fatalf("no ffmpeg start in the log:\n%s", p.logText())
		} else {
			time.Sleep(50 * time.Millisecond) // polling another process's log
		}
	}
	waitForSegments(t, "http://"+p.addr+"/live/500k/index.m3u8", 1)
	if _, err := os.Stat("/proc/" + pid); err != nil {
		t.Fatalf("ffmpeg pid %s not running: %v", pid, err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, p.logText())
	}
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Fatalf("ffmpeg (pid %s) outlived the origin", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("ffmpeg's directory %s is still there (%v)", dir, err)
	}
}

// TestCommandRejectsBadFlags: bad flags exit 2 with a message naming the flag, before
// serving anything.
func TestCommandRejectsBadFlags(t *testing.T) {
	t.Parallel()
	bin := testbin.Stampede(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--window", "2"}, "--window"},
		{[]string{"--window", "0"}, "--window"},
		{[]string{"--segment-duration", "0"}, "--segment-duration"},
		{[]string{"--segment-duration", "-2s"}, "--segment-duration"},
		{[]string{"--renditions", "0"}, "--renditions"},
		{[]string{"--renditions", "99"}, "--renditions"},
		{[]string{"--bitrate", "fast"}, "-bitrate"},
		{[]string{"--bitrate", "10k"}, "--bitrate"},
		{[]string{"--epoch", "yesterday"}, "-epoch"},
		{[]string{"--dir", "/does/not/exist"}, "--dir"},
		{[]string{"--dir", "/tmp", "--ffmpeg"}, "--dir"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, append([]string{"origin", "--listen", "127.0.0.1:0"}, tc.args...)...).CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2\n%s", tc.args, err, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: message does not name %s:\n%s", tc.args, tc.want, out)
		}
	}
}
