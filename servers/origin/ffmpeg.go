package origin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FFmpeg mode settings.
const (
	// ffmpegAudioBitrate is the AAC bit rate of every rendition.
	ffmpegAudioBitrate = 48_000
	// ffmpegMinVideoBitrate is the least video bit rate New accepts for a rendition.
	ffmpegMinVideoBitrate = 50_000
	// ffmpegStopGrace is how long ffmpeg gets to finish after SIGINT before SIGKILL.
	ffmpegStopGrace = 5 * time.Second
)

// ffmpegVideoBitrate leaves room in a rendition's bit rate for the audio and the
// transport stream overhead (about 12% at these rates), so a "500k" rendition measures
// about 500 kbit/s.
func ffmpegVideoBitrate(bps int64) int64 { return bps*88/100 - ffmpegAudioBitrate }

// ffmpegArgs is the command line that writes the ladder as HLS into dir:
// dir/master.m3u8, dir/{rendition}/index.m3u8 and dir/{rendition}/{N}.ts — the same
// URLs as the synthetic stream. Video is CBR (x264 filler data) so each rendition
// really has its bit rate; every segment starts with a keyframe; segments that leave the
// playlist are deleted only after the RFC 8216 grace period (window+1 more segments).
func ffmpegArgs(cfg Config, dir string) (args, names []string) {
	d := strconv.FormatFloat(cfg.SegmentDuration.Seconds(), 'f', -1, 64)
	gop := strconv.Itoa(int(cfg.SegmentDuration * mediaFPS / time.Second))
	args = []string{
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
		"-re", "-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=%dx%d:rate=%d", mediaWidth, mediaHeight, mediaFPS),
		"-re", "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:sample_rate=%d", audioRate),
	}
	ladder := Ladder(cfg.Bitrate, cfg.Renditions)
	var streamMap []string
	for i, bps := range ladder {
		name := FormatBitrate(bps)
		names = append(names, name)
		args = append(args, "-map", "0:v", "-map", "1:a")
		streamMap = append(streamMap, fmt.Sprintf("v:%d,a:%d,name:%s", i, i, name))
	}
	args = append(args,
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-bf", "0", "-pix_fmt", "yuv420p", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
		"-force_key_frames", "expr:gte(t,n_forced*"+d+")", "-x264-params", "nal-hrd=cbr")
	for i, bps := range ladder {
		v := strconv.FormatInt(ffmpegVideoBitrate(bps), 10)
		si := strconv.Itoa(i)
		args = append(args, "-b:v:"+si, v, "-minrate:v:"+si, v, "-maxrate:v:"+si, v, "-bufsize:v:"+si, v)
	}
	args = append(args,
		"-c:a", "aac", "-ac", "1", "-b:a", strconv.Itoa(ffmpegAudioBitrate),
		"-f", "hls", "-hls_time", d,
		"-hls_list_size", strconv.Itoa(cfg.Window),
		"-hls_delete_threshold", strconv.Itoa(cfg.Window+1),
		"-hls_flags", "delete_segments+program_date_time+independent_segments+temp_file+omit_endlist",
		"-master_pl_name", "master.m3u8",
		"-var_stream_map", strings.Join(streamMap, " "),
		"-hls_segment_filename", filepath.Join(dir, "%v", "%d.ts"),
		filepath.Join(dir, "%v", "index.m3u8"))
	return args, names
}

// ffmpegProcess is an ffmpeg this origin started.
type ffmpegProcess struct {
	cmd   *exec.Cmd
	dir   string   // the temporary directory it writes
	names []string // rendition names
	log   *slog.Logger
	done  chan struct{} // closed when ffmpeg has exited

	mu       sync.Mutex // protects exitErr, stopping
	exitErr  error
	stopping bool
}

func startFFmpeg(cfg Config) (*ffmpegProcess, error) {
	if v := ffmpegVideoBitrate(cfg.Bitrate); v < ffmpegMinVideoBitrate {
		return nil, fmt.Errorf("bitrate: ffmpeg mode needs at least %s (audio takes %s)",
			FormatBitrate((ffmpegMinVideoBitrate+ffmpegAudioBitrate)*100/88+1000), FormatBitrate(ffmpegAudioBitrate))
	}
	if cfg.SegmentDuration%(time.Second/mediaFPS) != 0 {
		return nil, fmt.Errorf("segment-duration: ffmpeg mode needs a multiple of one frame (%v)", time.Second/mediaFPS)
	}
	bin, err := exec.LookPath(cfg.FFmpegPath)
	if err != nil {
		return nil, fmt.Errorf("ffmpeg: %q not found (install the Debian package ffmpeg): %w", cfg.FFmpegPath, err)
	}
	dir, err := os.MkdirTemp("", "stampede-origin-ffmpeg-")
	if err != nil {
		return nil, fmt.Errorf("ffmpeg: %w", err)
	}
	args, names := ffmpegArgs(cfg, dir)
	cmd := exec.Command(bin, args...)
	// If this process dies without Close, ffmpeg must not live on writing to /tmp.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ffmpeg: %w", err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ffmpeg: start %s: %w", bin, err)
	}
	p := &ffmpegProcess{cmd: cmd, dir: dir, names: names, log: cfg.Logger, done: make(chan struct{})}
	p.log.Info("ffmpeg started", "pid", cmd.Process.Pid, "dir", dir, "renditions", strings.Join(names, ","))
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		p.logLines(stderr)
	}()
	go func() {
		<-logged // Wait closes the pipe; read it to the end first
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		if p.exitErr == nil {
			p.exitErr = errors.New("exited")
		}
		stopping := p.stopping
		p.mu.Unlock()
		if !stopping {
			p.log.Error("ffmpeg exited", "err", err)
		}
		close(p.done)
	}()
	return p, nil
}

// logLines logs what ffmpeg prints (it runs at -loglevel warning).
func (p *ffmpegProcess) logLines(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.log.Warn("ffmpeg", "line", sc.Text())
	}
}

func (p *ffmpegProcess) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *ffmpegProcess) exitReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exitErr == nil {
		return "running"
	}
	return p.exitErr.Error()
}

// stop asks ffmpeg to finish (SIGINT), then kills it after ffmpegStopGrace.
func (p *ffmpegProcess) stop() error {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	t := time.NewTimer(ffmpegStopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.log.Warn("ffmpeg ignored SIGINT; killing it", "pid", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

func (p *ffmpegProcess) removeDir() error { return os.RemoveAll(p.dir) }
