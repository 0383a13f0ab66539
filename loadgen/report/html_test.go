package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of the report's data section")

// Fixtures under testdata/runs are real runs, copied as written:
//   - counter-holes: `stampede bench` of a scenario with the story's unsafe counter
//     and a mutex one, the counter frozen (SIGSTOP) from 12 s to 16 s; unsafe also
//     crashed at 24.3 s. Its files are summary.json and <tuning>/{series,servers}.json.
//   - viewers-only: `stampede viewers --out` against an origin and a counter: one
//     tuning, summary.json and series.json side by side, no server data.
var fixtures = []string{"counter-holes", "viewers-only"}

func loadFixture(t testing.TB, name string) *RunFiles {
	t.Helper()
	rf, err := LoadRun(filepath.Join("testdata", "runs", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(rf.Problems) > 0 {
		t.Fatalf("fixture %s: %v", name, rf.Problems)
	}
	return rf
}

// numberArray is a JSON array of numbers and nulls as MarshalIndent spreads it, one
// element per line; goldenJSON puts each back on one line so a diff stays readable.
var numberArray = regexp.MustCompile(`\[(\s*(-?[0-9][0-9.eE+-]*|null)\s*,)*\s*(-?[0-9][0-9.eE+-]*|null)\s*\]`)

func goldenJSON(t *testing.T, p *Page) []byte {
	t.Helper()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = numberArray.ReplaceAllFunc(b, func(m []byte) []byte {
		return regexp.MustCompile(`\s+`).ReplaceAll(m, nil)
	})
	return append(b, '\n')
}

// TestPageGolden pins the data section each fixture's page embeds. After an intended
// change: go test ./loadgen/report -run TestPageGolden -update, and read the diff.
func TestPageGolden(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			got := goldenJSON(t, BuildPage(loadFixture(t, name)))
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
				for i := 0; i < len(gl) || i < len(wl); i++ {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Fatalf("%s differs from the page's data at line %d:\n got: %.300s\nwant: %.300s\n(run with -update if intended)", path, i+1, g, w)
					}
				}
			}
			// The golden form is the embedded data, re-indented: both decode alike.
			embedded, err := BuildPage(loadFixture(t, name)).JSON()
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(embedded, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(got, &b); err != nil {
				t.Fatal(err)
			}
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if !bytes.Equal(ja, jb) {
				t.Fatal("the golden form and the embedded data section decode differently")
			}
		})
	}
}

func row(p *Page, id string) *ChartRow {
	for i := range p.Rows {
		if p.Rows[i].ID == id {
			return &p.Rows[i]
		}
	}
	return nil
}

func lineOf(c *Chart, name string) *Line {
	for i := range c.Lines {
		if c.Lines[i].Name == name {
			return &c.Lines[i]
		}
	}
	return nil
}

func isGap(n Num) bool { return math.IsNaN(float64(n)) }

// TestCounterHolesAreGaps: the steps in which the frozen counter gave no answer are
// gaps in the counter's line, not values (and not lines drawn across), and the
// crash and the faults are marked.
func TestCounterHolesAreGaps(t *testing.T) {
	rf := loadFixture(t, "counter-holes")
	p := BuildPage(rf)
	r := row(p, "counter")
	if r == nil || len(r.Charts) != 2 || r.Charts[0] == nil {
		t.Fatalf("counter row: %+v", r)
	}
	answer := lineOf(r.Charts[0], "counter's answer")
	truth := lineOf(r.Charts[0], "true viewers")
	if answer == nil || truth == nil {
		t.Fatalf("lines: %+v", r.Charts[0].Lines)
	}
	gaps := 0
	for i, pt := range rf.Series[0].Points {
		if got, none := isGap(answer.V[i]), pt.CounterAnswer < 0; got != none {
			t.Errorf("t=%.0fs: gap %v, but the series says answer %d", pt.T, got, pt.CounterAnswer)
		}
		if isGap(answer.V[i]) {
			gaps++
		}
		if isGap(truth.V[i]) {
			t.Errorf("t=%.0fs: the true count has a gap", pt.T)
		}
	}
	if gaps < 3 {
		t.Errorf("%d gaps in the counter's answers, want the frozen 4 s (at least 3 steps)", gaps)
	}
	var crash, faults int
	for _, m := range r.Charts[0].Marks {
		switch m.Kind {
		case "crash":
			crash++
			if m.Label != "counter crashed" || math.Abs(m.T-24.3) > 0.05 {
				t.Errorf("crash mark %+v, want counter crashed at 24.3s", m)
			}
		case "fault":
			faults++
		}
	}
	if crash != 1 || faults != 2 {
		t.Errorf("marks %+v: want 1 crash and 2 faults", r.Charts[0].Marks)
	}
	// The servers' side: scrapes the frozen counter did not answer are gaps too.
	fds := row(p, "fds")
	if fds == nil || fds.Charts[0] == nil {
		t.Fatal("no fds row")
	}
	counterFDs := lineOf(fds.Charts[0], "counter")
	down := 0
	for i, pt := range rf.Servers[0].Points {
		if !pt.Procs["counter"].Up {
			down++
			if !isGap(counterFDs.V[i]) {
				t.Errorf("t=%.1fs: counter down but its FDs drawn as %v", pt.T, counterFDs.V[i])
			}
		}
	}
	if down == 0 {
		t.Error("fixture has no scrape of the counter down")
	}
}

// TestPageRowsAndBars checks which rows and bars each kind of run gets.
func TestPageRowsAndBars(t *testing.T) {
	bench := BuildPage(loadFixture(t, "counter-holes"))
	viewers := BuildPage(loadFixture(t, "viewers-only"))
	ids := func(p *Page) string {
		var out []string
		for _, r := range p.Rows {
			out = append(out, r.ID)
		}
		return strings.Join(out, " ")
	}
	bars := func(p *Page) string {
		var out []string
		for _, b := range p.Compare {
			out = append(out, b.ID)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name       string
		p          *Page
		rows, bars string
		server     bool
		verdict    string
	}{
		// A bench run has every row, the servers' included, and every bar.
		{"bench", bench,
			"viewers requests playlist_latency segment_latency stalls errors counter hit_ratio origin fds conns generator",
			"segment_p99 playlist_p99 startup_p90 stalls rebuffer_ratio error_rate origin_requests hit_ratio max_fds counter_error counter_crashes lag_p99 peak_viewers",
			true, "fail"},
		// A viewers run has no server rows or bars; its heartbeats give the counter row.
		{"viewers", viewers,
			"viewers requests playlist_latency segment_latency stalls errors counter generator",
			"segment_p99 playlist_p99 startup_p90 stalls rebuffer_ratio error_rate counter_error lag_p99 peak_viewers",
			false, "pass"},
	} {
		if got := ids(tc.p); got != tc.rows {
			t.Errorf("%s rows:\n got %s\nwant %s", tc.name, got, tc.rows)
		}
		if got := bars(tc.p); got != tc.bars {
			t.Errorf("%s bars:\n got %s\nwant %s", tc.name, got, tc.bars)
		}
		if tc.p.ServerData != tc.server || tc.p.Verdict != tc.verdict {
			t.Errorf("%s: server data %v verdict %s, want %v %s", tc.name, tc.p.ServerData, tc.p.Verdict, tc.server, tc.verdict)
		}
		for _, r := range tc.p.Rows {
			if len(r.Charts) != len(tc.p.Tunings) {
				t.Errorf("%s row %s: %d charts for %d tunings", tc.name, r.ID, len(r.Charts), len(tc.p.Tunings))
			}
		}
	}
	// The unsafe counter's crash shows in its figures as harm.
	var crashFig *Figure
	for i, f := range bench.Tunings[0].Figures {
		if f.Label == "counter" {
			crashFig = &bench.Tunings[0].Figures[i]
		}
	}
	if crashFig == nil || !crashFig.Bad || !strings.Contains(crashFig.Text, "1 crashes") {
		t.Errorf("unsafe's counter figure: %+v", crashFig)
	}
}

func TestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Summary
		want string
	}{
		{"all pass", Summary{Pass: true, Tunings: []Tuning{{Pass: true}}}, "pass"},
		{"one fails", Summary{Tunings: []Tuning{{Pass: true}, {}}}, "fail"},
		// A bound generator voids the run whatever the gates said.
		{"bound", Summary{Pass: true, Tunings: []Tuning{{Pass: true, Generator: Generator{Bound: true}}}}, "invalid"},
		{"interrupted", Summary{Incomplete: true, Tunings: []Tuning{{Pass: true}}}, "incomplete"},
	} {
		if got := runVerdict(&tc.s); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := tuningVerdict(&Tuning{Pass: true, Generator: Generator{Bound: true}}); got != "invalid" {
		t.Errorf("bound tuning: %s", got)
	}
}

// TestLineMergesLongRunsKeepingGaps: an hour of seconds is merged to at most
// maxPoints points, and a one-second hole survives the merge.
func TestLineMergesLongRunsKeepingGaps(t *testing.T) {
	const n = 3600
	l := line("x", n, func(i int) (float64, Num) {
		if i == 1800 {
			return float64(i + 1), gap
		}
		return float64(i + 1), Num(i % 10)
	})
	if len(l.T) > maxPoints || len(l.T) != len(l.V) || len(l.T) < maxPoints/2 {
		t.Fatalf("%d points (%d values), want at most %d", len(l.T), len(l.V), maxPoints)
	}
	gaps := 0
	for _, v := range l.V {
		if isGap(v) {
			gaps++
		}
	}
	if gaps != 1 {
		t.Errorf("%d gaps after merging, want 1", gaps)
	}
	if last := float64(l.T[len(l.T)-1]); last != n {
		t.Errorf("last point at %v, want %d", last, n)
	}
	short := line("y", 5, func(i int) (float64, Num) { return float64(i), Num(i) })
	if len(short.V) != 5 || short.V[4] != 4 {
		t.Errorf("a short line changed: %v", short.V)
	}
}

func TestNumJSON(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{math.NaN(), "null"},   // a gap
		{math.Inf(1), "null"},  // a rate over no time
		{math.Inf(-1), "null"}, // likewise
		{1.0 / 3, "0.333333"},  // six significant digits
		{250, "250"},           // integers stay integers
		{3.2923648e7, "3.29236e+07"},
	} {
		b, err := json.Marshal(Num(tc.in))
		if err != nil || string(b) != tc.want {
			t.Errorf("%v: %s %v, want %s", tc.in, b, err, tc.want)
		}
	}
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// TestWriteHTMLSelfContained: the page holds its data, script and styles, links
// nothing outside itself, and its data section is the page's JSON.
func TestWriteHTMLSelfContained(t *testing.T) {
	dir := copyDir(t, filepath.Join("testdata", "runs", "counter-holes"))
	problems, err := WriteHTML(dir)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	st, err := os.Stat(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("report.html mode %v, want 0644", st.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	page := string(b)
	// The SVG namespace is a name, not a fetch; any other URL would be a fetch.
	linkless := strings.ReplaceAll(page, "'http://www.w3.org/2000/svg'", "")
	for _, bad := range []string{"http://", "https://", "src=", "@import", "url("} {
		if strings.Contains(linkless, bad) {
			t.Errorf("report.html contains %q: it must not load anything", bad)
		}
	}
	const open, end = `<script type="application/json" id="stampede-data">`, `</script>`
	i := strings.Index(page, open)
	if i < 0 {
		t.Fatal("no data section")
	}
	data := page[i+len(open):]
	data = data[:strings.Index(data, end)]
	want, _ := BuildPage(loadFixture(t, "counter-holes")).JSON()
	if data != string(want) {
		t.Errorf("embedded data differs from the page's JSON:\n%.200s\n%.200s", data, want)
	}
	if !strings.Contains(page, "<title>stampede report — fixture</title>") {
		t.Error("title lacks the run's name")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".report-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestHostileNamesStayText: a run or note holding markup cannot break out of the
// data section (json.Marshal escapes <, >, &; the script sets text, never HTML).
func TestHostileNamesStayText(t *testing.T) {
	dir := t.TempDir()
	s := &Summary{Run: `</script><script>alert(1)</script>`, Scenario: "x",
		Tunings: []Tuning{{Name: "default", Notes: []string{`<img src=x onerror=alert(1)>`}}}}
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteHTML(dir); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	if strings.Count(string(b), "</script>") != 2 || strings.Contains(string(b), "<img") {
		t.Errorf("markup from the summary reached the page:\n%s", b)
	}
}

// TestLoadRunDamagedFiles: a damaged series is reported and left out; the others
// still draw. A missing summary is an error; a tuning name that would leave the
// directory is not followed.
func TestLoadRunDamagedFiles(t *testing.T) {
	dir := copyDir(t, filepath.Join("testdata", "runs", "counter-holes"))
	if err := os.WriteFile(filepath.Join(dir, "mutex", SeriesFile), []byte(`{"points": [tru`), 0o644); err != nil {
		t.Fatal(err)
	}
	rf, err := LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rf.Problems) != 1 || !strings.Contains(rf.Problems[0], filepath.Join("mutex", SeriesFile)) {
		t.Fatalf("problems %v, want one naming mutex/series.json", rf.Problems)
	}
	p := BuildPage(rf)
	if r := row(p, "viewers"); r == nil || r.Charts[0] == nil || r.Charts[1] != nil {
		t.Errorf("viewers row with a damaged mutex series: %+v", r)
	}
	if r := row(p, "fds"); r == nil || r.Charts[1] == nil {
		t.Error("mutex's servers chart lost with its series")
	}
	if len(p.Problems) != 1 {
		t.Errorf("the page does not show the problem: %v", p.Problems)
	}

	if _, err := LoadRun(t.TempDir()); err == nil {
		t.Error("a directory without summary.json loaded")
	}

	escape := t.TempDir()
	if err := Write(escape, &Summary{Run: "r", Tunings: []Tuning{{Name: "../outside"}}}); err != nil {
		t.Fatal(err)
	}
	rf, err = LoadRun(escape)
	if err != nil {
		t.Fatal(err)
	}
	if rf.Series[0] != nil || len(rf.Problems) != 1 {
		t.Errorf("tuning ../outside: series %v problems %v", rf.Series[0], rf.Problems)
	}
}

// FuzzBuildPage: whatever a run's series files hold, the page builds and its data
// marshals (no NaN or Inf reaches JSON, no index goes out of range).
func FuzzBuildPage(f *testing.F) {
	// Seeds are a few real points of the fixture (the counter frozen), and odd shapes:
	// small inputs mutate into more shapes per second than whole files.
	rf := loadFixture(f, "counter-holes")
	for i := range rf.Series {
		series, servers := *rf.Series[i], *rf.Servers[i]
		series.Points = series.Points[12:15]
		servers.Points = servers.Points[11:13]
		sb, _ := json.Marshal(series)
		vb, _ := json.Marshal(servers)
		f.Add(sb, vb)
	}
	f.Add([]byte(`{"step_s":0,"points":[{"t":1,"counter_answer":-1,"errors":{"x":-5}}]}`),
		[]byte(`{"processes":[{"name":"m","role":"mirror"}],"points":[{"t":0,"procs":{"m":{"up":true,"requests":1e300,"hit_ratio":-1}}},{"t":0,"procs":{}}]}`))
	f.Add([]byte(`{"step_s":-1e308,"points":[{"t":-1e308,"requests":{"segment":9223372036854775807}}]}`), []byte(`{}`))
	sum := &Summary{Run: "fuzz", Tunings: []Tuning{{Name: "a", Notes: []string{"fault at 1e5s: x", "c crashed at -3s: y"}}}}
	f.Fuzz(func(t *testing.T, series, servers []byte) {
		// The files as LoadRun reads them (a file that does not decode is left out).
		rf := &RunFiles{Summary: sum, Series: make([]*Series, 1), Servers: make([]*ServerSeries, 1)}
		var se Series
		if json.Unmarshal(series, &se) == nil {
			rf.Series[0] = &se
		}
		var sv ServerSeries
		if json.Unmarshal(servers, &sv) == nil {
			rf.Servers[0] = &sv
		}
		p := BuildPage(rf)
		if _, err := p.JSON(); err != nil {
			t.Fatalf("page data does not marshal: %v", err)
		}
		if err := RenderHTML(io.Discard, p); err != nil {
			t.Fatal(err)
		}
	})
}
