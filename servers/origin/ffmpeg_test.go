package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests in this file have Debian's ffmpeg and ffprobe read the origin over HTTP as
// real players, and fail — never skip — when the tools are missing.

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: install the Debian package ffmpeg (make test does)", name)
	}
	return p
}

// serveHTTP runs h on a real loopback listener with the server's production limits.
func serveHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewHTTPServer(h, quietLog)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL
}

// toolRun is a finished ffmpeg or ffprobe run.
type toolRun struct {
	args           []string
	stdout, stderr []byte
	err            error
}

// check fails the test unless the run succeeded and printed no line matching bad.
func (r toolRun) check(t testing.TB, bad *regexp.Regexp) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%v: %v\n%s", r.args, r.err, r.stderr)
	}
	var problems []string
	for line := range strings.SplitSeq(string(r.stderr), "\n") {
		if bad.MatchString(line) {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 {
		t.Fatalf("%s reported problems:\n%s", r.args[0], strings.Join(problems, "\n"))
	}
}

var (
	// anyLine: at -loglevel warning a clean run prints nothing; any line is a decode
	// error, a timestamp discontinuity, a missing segment or a corrupt packet.
	anyLine = regexp.MustCompile(`\S`)
	// badDebugLine: at -loglevel level+debug, any warning or error, and the demuxer's
	// continuity-counter check (which ffmpeg logs at debug level only).
	badDebugLine = regexp.MustCompile(`\[(warning|error|fatal|panic)\]|Continuity check failed`)
)

func runTool(ctx context.Context, name string, args ...string) toolRun {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return toolRun{args: append([]string{name}, args...), stdout: out.Bytes(), stderr: errb.Bytes(), err: err}
}

// playLive has two real clients read the live stream at url at once, as players would:
// ffprobe decodes every frame of the first `seconds` of media and lists their
// timestamps; ffmpeg remuxes the stream (checking DTS order and, at debug level, every
// continuity counter) into an MPEG-TS file. Both must finish without a single warning. It returns the frames' PTS by stream index and
// the stream's media type.
func playLive(t *testing.T, url string, seconds int) (pts map[int][]int64, kinds map[int]string) {
	t.Helper()
	needTool(t, "ffprobe")
	needTool(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var probe, remux toolRun
	var wg sync.WaitGroup
	wg.Go(func() {
		probe = runTool(ctx, "ffprobe", "-hide_banner", "-v", "warning",
			"-read_intervals", "%+"+strconv.Itoa(seconds),
			"-show_frames", "-show_entries", "frame=media_type,stream_index,pts", "-of", "json", url)
	})
	wg.Go(func() {
		remux = runTool(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "level+debug", "-i", url,
			"-map", "0", "-c", "copy", "-t", strconv.Itoa(seconds), "-f", "mpegts", "-y", filepath.Join(t.TempDir(), "out.ts"))
	})
	wg.Wait()
	probe.check(t, anyLine)
	remux.check(t, badDebugLine)
	var out struct {
		Frames []struct {
			MediaType   string `json:"media_type"`
			StreamIndex int    `json:"stream_index"`
			PTS         *int64 `json:"pts"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(probe.stdout, &out); err != nil {
		t.Fatalf("ffprobe output: %v", err)
	}
	pts, kinds = map[int][]int64{}, map[int]string{}
	for _, f := range out.Frames {
		if f.PTS == nil {
			t.Fatalf("a %s frame without a timestamp", f.MediaType)
		}
		pts[f.StreamIndex] = append(pts[f.StreamIndex], *f.PTS)
		kinds[f.StreamIndex] = f.MediaType
	}
	return pts, kinds
}

// checkContinuous requires every stream's decoded frames to follow each other by exactly
// one frame duration (video 25 fps, AAC 1024 samples at 48 kHz) over at least
// minSeconds: no gap, no repeat, no jump at any segment boundary.
func checkContinuous(t *testing.T, pts map[int][]int64, kinds map[int]string, minSeconds float64) {
	t.Helper()
	sawVideo, sawAudio := false, false
	for idx, ts := range pts {
		step := int64(videoTicks)
		switch kinds[idx] {
		case "video":
			sawVideo = true
		case "audio":
			sawAudio, step = true, audioTicks
		default:
			t.Fatalf("stream %d is %q", idx, kinds[idx])
		}
		for i := 1; i < len(ts); i++ {
			if d := ts[i] - ts[i-1]; d != step {
				t.Fatalf("%s stream %d: frame %d follows the previous by %d ticks, want %d (PTS %d -> %d)",
					kinds[idx], idx, i, d, step, ts[i-1], ts[i])
			}
		}
		if span := float64(int64(len(ts))*step) / 90_000; span < minSeconds {
			t.Fatalf("%s stream %d: %.2f s of media decoded, want >= %.0f s", kinds[idx], idx, span, minSeconds)
		}
		t.Logf("%s stream %d: %d frames, %.2f s, every step %d ticks", kinds[idx], idx, len(ts), float64(int64(len(ts))*step)/90_000, step)
	}
	if !sawVideo || !sawAudio {
		t.Fatalf("decoded video=%v audio=%v, want both", sawVideo, sawAudio)
	}
}

// TestFFmpegPlaysSyntheticStream: ffprobe and ffmpeg play the synthetic origin's
// multivariant stream over HTTP for 12 s of media. The origin's clock runs 2× faster than
// the wall clock so the test takes seconds; the players reload on their own wall-clock
// schedule, as against any live origin. A 10-segment window leaves a loaded machine
// room to stall the players for seconds without them falling off the window.
func TestFFmpegPlaysSyntheticStream(t *testing.T) {
	t.Parallel()
	c := scaledClock{wallStart: time.Now(), start: testEpoch.Add(30 * time.Second), factor: 2}
	s := newTestServer(t, Config{Renditions: 2, Window: 10, Epoch: testEpoch, Clock: c})
	base := serveHTTP(t, s.Handler())
	pts, kinds := playLive(t, base+"/live/master.m3u8", 12)
	checkContinuous(t, pts, kinds, 10)
	if len(pts) != 4 {
		t.Fatalf("decoded %d streams, want 4 (two renditions × video, audio)", len(pts))
	}
	// Proof that the players crossed segment boundaries and reloaded the playlists
	// (ffmpeg asks with "Range: bytes=0-", so the answers are 200 or 206) and never
	// asked for a segment the origin did not have.
	checkServed(t, s, 12, 6, 0)
}

// TestFFmpegPlaysDirectory is the original setup: ffmpeg writes HLS into a directory in
// real time, the origin serves the directory, and ffprobe/ffmpeg play it over HTTP.
func TestFFmpegPlaysDirectory(t *testing.T) {
	t.Parallel()
	needTool(t, "ffmpeg")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	writer := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-re", "-f", "lavfi", "-i", "testsrc=size=256x144:rate=25",
		"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-ac", "1",
		"-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_delete_threshold", "7",
		"-hls_flags", "delete_segments+program_date_time+temp_file+omit_endlist",
		"-hls_segment_filename", filepath.Join(dir, "%d.ts"), filepath.Join(dir, "index.m3u8"))
	var werr bytes.Buffer
	writer.Stderr = &werr
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		writer.Wait()
		if werr.Len() > 0 {
			t.Logf("writer: %s", werr.String())
		}
	}()

	s := newTestServer(t, Config{Dir: dir})
	base := serveHTTP(t, s.Handler())
	waitForSegments(t, base+"/live/index.m3u8", 3)
	early404 := counterValue(t, s, MetricRequests, "kind", "playlist", "code", "404") // before ffmpeg wrote it
	pts, kinds := playLive(t, base+"/live/index.m3u8", 11)
	checkContinuous(t, pts, kinds, 10)
	checkServed(t, s, 10, 3, early404)
}

// checkServed requires at least segments segment and playlists playlist requests, and
// no 404 beyond the early404 playlist misses that came before the players started.
func checkServed(t *testing.T, s *Server, segments, playlists, early404 float64) {
	t.Helper()
	if n := counterValue(t, s, MetricRequests, "kind", "segment"); n < segments {
		t.Errorf("only %v segment requests", n)
	}
	if n := counterValue(t, s, MetricRequests, "kind", "playlist"); n < playlists {
		t.Errorf("only %v playlist loads: the players never reloaded", n)
	}
	if n := counterValue(t, s, MetricRequests, "kind", "segment", "code", "404"); n != 0 {
		t.Errorf("%v segment requests got 404", n)
	}
	if n := counterValue(t, s, MetricRequests, "kind", "playlist", "code", "404"); n != early404 {
		t.Errorf("%v playlist requests got 404 while the players ran", n-early404)
	}
}

// TestFFmpegMode: the origin starts ffmpeg itself, serves what it writes under the same
// URLs as the synthetic stream, reports it in /healthz and /metrics, and stops it on Close.
func TestFFmpegMode(t *testing.T) {
	t.Parallel()
	needTool(t, "ffmpeg")
	s := newTestServer(t, Config{FFmpeg: true, SegmentDuration: time.Second, Window: 6})
	base := serveHTTP(t, s.Handler())
	waitForSegments(t, base+"/live/500k/index.m3u8", 2)
	master := httpGet(t, base+"/live/master.m3u8")
	if !strings.Contains(master, "500k/index.m3u8") {
		t.Fatalf("master playlist:\n%s", master)
	}
	if body := httpGet(t, base+"/healthz"); body != "ok\n" {
		t.Fatalf("healthz: %q", body)
	}
	if up := counterValue(t, s, MetricFFmpegUp); up != 1 {
		t.Fatalf("%s = %v while ffmpeg runs", MetricFFmpegUp, up)
	}
	pts, kinds := playLive(t, base+"/live/master.m3u8", 4)
	checkContinuous(t, pts, kinds, 3)

	dir, pid := s.ff.dir, s.ff.cmd.Process.Pid
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.ff.running() {
		t.Fatal("ffmpeg still running after Close")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("ffmpeg pid %d still exists after Close", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("ffmpeg's directory %s not removed: %v", dir, err)
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz after ffmpeg stopped: %d, want 503", resp.StatusCode)
	}
	if up := counterValue(t, s, MetricFFmpegUp); up != 0 {
		t.Fatalf("%s = %v after Close", MetricFFmpegUp, up)
	}
}

// waitForSegments polls a playlist until it lists at least n segments.
func waitForSegments(t *testing.T, url string, n int) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Count(b.String(), "#EXTINF") >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not list %d segments in time (last error %v)", url, n, err)
		}
		time.Sleep(100 * time.Millisecond) // polling an external writer, not synchronising
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b.String())
	}
	return b.String()
}
