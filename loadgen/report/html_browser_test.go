package report

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium; `make test` installs it (scripts/deps.sh).
const chromiumPath = "/usr/bin/chromium"

// artifactDir is where the screenshots go: $STAMPEDE_ARTIFACTS when set (CI keeps
// it), else the test's artifact directory (kept under the output dir with -artifacts).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("STAMPEDE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// renderedChart is what the page says it drew for one chart.
type renderedChart struct {
	Chart  string `json:"chart"`
	Points int    `json:"points"`
	Paths  int    `json:"paths"`
	Bars   int    `json:"bars"`
}

// TestReportInChromium opens each fixture's report.html in real headless Chromium:
// no console error or exception, every chart the data asks for is on the page and
// drew points (a line chart its paths, a bar chart its bars), the counter's frozen
// seconds are a break in its line, and a full-page screenshot is saved.
func TestReportInChromium(t *testing.T) {
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Fatalf("%s not found: install Debian's chromium package (make test does)", chromiumPath)
	}
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			dir := copyDir(t, filepath.Join("testdata", "runs", name))
			if _, err := WriteHTML(dir); err != nil {
				t.Fatal(err)
			}
			page := BuildPage(loadFixture(t, name))
			wantCharts := map[string]bool{}
			for _, r := range page.Rows {
				for i, c := range r.Charts {
					if c != nil {
						wantCharts[r.ID+"/"+page.Tunings[i].Name] = true
					}
				}
			}
			for _, b := range page.Compare {
				wantCharts["compare/"+b.ID] = true
			}

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			opts := append(chromedp.DefaultExecAllocatorOptions[:],
				chromedp.ExecPath(chromiumPath),
				chromedp.Flag("headless", true),
				chromedp.NoSandbox, // tests run as root here
				chromedp.DisableGPU,
				chromedp.WindowSize(1500, 1000),
			)
			actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
			defer cancelAlloc()
			bctx, cancelBrowser := chromedp.NewContext(actx)
			defer cancelBrowser()

			// Listen before navigating so no message is lost.
			var mu sync.Mutex // protects problems
			var problems []string
			chromedp.ListenTarget(bctx, func(ev any) {
				var msg string
				switch ev := ev.(type) {
				case *runtime.EventConsoleAPICalled:
					if ev.Type != runtime.APITypeError {
						return
					}
					var parts []string
					for _, a := range ev.Args {
						parts = append(parts, string(a.Value)+a.Description)
					}
					msg = "console.error: " + strings.Join(parts, " ")
				case *runtime.EventExceptionThrown:
					msg = "exception: " + ev.ExceptionDetails.Error()
				case *cdplog.EventEntryAdded:
					if ev.Entry.Level != cdplog.LevelError {
						return
					}
					msg = "log: " + ev.Entry.Text + " (" + ev.Entry.URL + ")"
				default:
					return
				}
				mu.Lock()
				problems = append(problems, msg)
				mu.Unlock()
			})

			var charts []renderedChart
			// Each "M" after the first starts the line again after a gap.
			var counterBreaks int
			var png, topPNG, counterPNG []byte
			err := chromedp.Run(bctx,
				cdplog.Enable(),
				chromedp.Navigate("file://"+filepath.Join(dir, HTMLFile)),
				chromedp.WaitReady(`body[data-rendered="true"]`, chromedp.ByQuery),
				chromedp.Evaluate(`Array.from(document.querySelectorAll('figure.chart, figure.bars')).map(f => ({
					chart: f.dataset.chart, points: Number(f.dataset.points),
					paths: f.querySelectorAll('path.series').length, bars: f.querySelectorAll('.bar').length}))`, &charts),
				chromedp.Evaluate(`(() => { const p = document.querySelector('figure[data-chart^="counter/"] path[data-name="counter\'s answer"]');
					return p ? p.getAttribute('d').split('M').length - 2 : -1; })()`, &counterBreaks),
				chromedp.FullScreenshot(&png, 100),
				// What a reader sees first, and the story's graph on its own: the counter
				// against the truth.
				chromedp.CaptureScreenshot(&topPNG),
				chromedp.Screenshot("#row-counter", &counterPNG, chromedp.ByQuery),
			)
			if err != nil {
				t.Fatal(err)
			}
			cancelBrowser()
			shot := filepath.Join(artifactDir(t), "report-"+name+".png")
			if err := os.WriteFile(shot, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s (%d bytes)", shot, len(png))
			for suffix, b := range map[string][]byte{"top": topPNG, "counter": counterPNG} {
				p := filepath.Join(artifactDir(t), "report-"+name+"-"+suffix+".png")
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot (%s): %s", suffix, p)
			}

			mu.Lock()
			for _, p := range problems {
				t.Errorf("browser: %s", p)
			}
			mu.Unlock()
			got := map[string]bool{}
			for _, c := range charts {
				got[c.Chart] = true
				if !wantCharts[c.Chart] {
					t.Errorf("chart %s on the page, not in the data", c.Chart)
				}
				switch {
				case c.Points <= 0:
					t.Errorf("chart %s drew no points", c.Chart)
				case strings.HasPrefix(c.Chart, "compare/") && c.Bars != c.Points:
					t.Errorf("bar chart %s: %d bars for %d values", c.Chart, c.Bars, c.Points)
				case !strings.HasPrefix(c.Chart, "compare/") && c.Paths == 0:
					t.Errorf("chart %s has no line", c.Chart)
				}
			}
			for c := range wantCharts {
				if !got[c] {
					t.Errorf("chart %s missing from the page", c)
				}
			}
			if name == "counter-holes" && counterBreaks < 1 {
				t.Errorf("the counter's line has %d breaks, want the frozen seconds as a gap", counterBreaks)
			}
			if len(charts) < 10 {
				t.Errorf("only %d charts rendered: %s", len(charts), fmt.Sprint(charts))
			}
		})
	}
}
