package report

import (
	"math"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// Page is report.html's data section: everything the page draws, computed here so the
// script only lays out and plots (and so the figures are golden-tested in Go).
type Page struct {
	Run      string `json:"run"`
	Scenario string `json:"scenario"`
	Started  string `json:"started"` // RFC 3339, UTC
	// Verdict is the run's: pass, fail, invalid (a generator fell behind: the figures
	// cannot be trusted) or incomplete (interrupted).
	Verdict string `json:"verdict"`
	// ServerData is false for a `stampede viewers` run: only the viewers' side exists.
	ServerData bool         `json:"server_data"`
	Problems   []string     `json:"problems,omitempty"`
	Tunings    []PageTuning `json:"tunings"`
	// Rows are the charts, one row per measure with one chart per tuning side by side,
	// on one y scale per row so the tunings compare by eye.
	Rows []ChartRow `json:"rows"`
	// Compare has one bar chart per key figure, a bar per tuning.
	Compare []BarChart `json:"compare"`
}

// PageTuning is one tuning's verdict, gates and figures.
type PageTuning struct {
	Name    string       `json:"name"`
	Verdict string       `json:"verdict"` // pass, fail, invalid
	Figures []Figure     `json:"figures"`
	Gates   []GateResult `json:"gates"`
	Notes   []string     `json:"notes,omitempty"`
}

// Figure is one labelled line of a tuning's figures, already formatted.
type Figure struct {
	Label string `json:"label"`
	Text  string `json:"text"`
	// Bad marks a figure that shows harm (stalls, errors, crashes, a bound generator).
	Bad bool `json:"bad,omitempty"`
}

// Units of a chart's values; the script formats axes by them.
const (
	unitCount = "count"
	unitPerS  = "per_s"
	unitMs    = "ms"
	unitRatio = "ratio"
)

// ChartRow is one measure across the tunings.
type ChartRow struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Unit  string `json:"unit"`
	// YMax fixes the top of the scale (ratios: 1); 0 means the row's largest value.
	YMax float64 `json:"y_max,omitempty"`
	// Charts has one entry per tuning, in order: null where that tuning has no such data.
	Charts []*Chart `json:"charts"`
}

// Chart is one tuning's lines for one measure.
type Chart struct {
	Note  string `json:"note,omitempty"`
	Lines []Line `json:"lines"`
	// Holes are spans without a value that matter in themselves (the counter not
	// answering, a server not answering its scrape): shaded, so a reader cannot miss them.
	Holes []Span `json:"holes,omitempty"`
	// Marks are moments worth seeing on every chart of the tuning: crashes and faults.
	Marks []Mark `json:"marks,omitempty"`
}

// Span is a stretch of the run, From and To in seconds.
type Span struct {
	From  Num    `json:"from"`
	To    Num    `json:"to"`
	Label string `json:"label"`
}

// Line is one series of points; a null value is a gap (no answer, a server down),
// drawn as a break in the line, never interpolated.
type Line struct {
	Name string `json:"name"`
	T    []Num  `json:"t"` // seconds since the viewers' run began
	V    []Num  `json:"v"`
}

// Mark is an event at T seconds.
type Mark struct {
	T     float64 `json:"t"`
	Label string  `json:"label"`
	Kind  string  `json:"kind"` // crash or fault
}

// BarChart is one key figure, a bar per tuning.
type BarChart struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Unit   string `json:"unit"`
	Better string `json:"better"` // lower or higher
	Bars   []Bar  `json:"bars"`
}

// Bar is one tuning's value; null when the tuning has no such figure.
type Bar struct {
	Tuning string `json:"tuning"`
	Value  Num    `json:"value"`
}

// Num is a number in the page's data: NaN and ±Inf are written as null (a gap), and
// values keep six significant digits, which is more than a chart shows and keeps the
// page small and the golden file stable.
type Num float64

// gap is the value of a point that has none.
var gap = Num(math.NaN())

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

// maxPoints bounds the points of one line: a long run's scrapes are merged into
// wider steps (a step with a gap stays a gap) so the page stays light.
const maxPoints = 1200

// BuildPage computes the page of a run's files.
func BuildPage(rf *RunFiles) *Page {
	s := rf.Summary
	p := &Page{Run: s.Run, Scenario: s.Scenario, Problems: rf.Problems,
		Tunings: []PageTuning{}, Rows: []ChartRow{}, Compare: []BarChart{}}
	if !s.Started.IsZero() {
		p.Started = s.Started.UTC().Format(time.RFC3339)
	}
	for _, srv := range rf.Servers {
		if srv != nil {
			p.ServerData = true
		}
	}
	p.Verdict = runVerdict(s)
	for i := range s.Tunings {
		p.Tunings = append(p.Tunings, pageTuning(&s.Tunings[i], p.ServerData))
	}
	marks := make([][]Mark, len(s.Tunings))
	for i := range s.Tunings {
		marks[i] = notesMarks(s.Tunings[i].Notes)
	}
	for _, def := range rowDefs {
		row := ChartRow{ID: def.id, Title: def.title, Unit: def.unit, YMax: def.yMax, Charts: make([]*Chart, len(s.Tunings))}
		drawn := false
		for i := range s.Tunings {
			var c *Chart
			se, sv := at(rf.Series, i), at(rf.Servers, i)
			switch {
			case def.viewers != nil && se != nil && len(se.Points) > 0:
				c = def.viewers(se, &s.Tunings[i])
			case def.servers != nil && sv != nil && len(sv.Points) > 0:
				c = def.servers(sv, &s.Tunings[i])
			}
			if c == nil || len(c.Lines) == 0 {
				continue
			}
			c.Marks = marks[i]
			row.Charts[i] = c
			drawn = true
		}
		if drawn {
			p.Rows = append(p.Rows, row)
		}
	}
	p.Compare = compareBars(s, p.ServerData)
	return p
}

// at is l[i], or nil past its end (RunFiles built by hand may hold fewer series).
func at[T any](l []*T, i int) *T {
	if i < len(l) {
		return l[i]
	}
	return nil
}

func runVerdict(s *Summary) string {
	for _, t := range s.Tunings {
		if t.Generator.Bound {
			return "invalid"
		}
	}
	switch {
	case s.Incomplete:
		return "incomplete"
	case s.Pass:
		return "pass"
	}
	return "fail"
}

func tuningVerdict(t *Tuning) string {
	switch {
	case t.Generator.Bound:
		return "invalid"
	case t.Pass:
		return "pass"
	}
	return "fail"
}

// rowDef is one chart row: how to draw it from a tuning's viewers' series or its
// servers' series (exactly one of the two is set).
type rowDef struct {
	id, title, unit string
	yMax            float64
	viewers         func(*Series, *Tuning) *Chart
	servers         func(*ServerSeries, *Tuning) *Chart
}

// rowDefs are the page's rows, in order.
var rowDefs = []rowDef{
	{id: "viewers", title: "Viewers", unit: unitCount, viewers: viewersChart},
	{id: "requests", title: "Requests per second", unit: unitPerS, viewers: requestsChart},
	{id: "playlist_latency", title: "Playlist latency", unit: unitMs, viewers: latencyChart(false)},
	{id: "segment_latency", title: "Segment latency", unit: unitMs, viewers: latencyChart(true)},
	{id: "stalls", title: "Stalls", unit: unitCount, viewers: stallsChart},
	{id: "errors", title: "Errors per second, by class", unit: unitPerS, viewers: errorsChart},
	{id: "counter", title: "Viewer counter vs true viewers", unit: unitCount, viewers: counterChart},
	{id: "hit_ratio", title: "Mirror cache hit ratio", unit: unitRatio, yMax: 1, servers: hitRatioChart},
	{id: "origin", title: "Origin requests per second", unit: unitPerS, servers: originChart},
	{id: "fds", title: "Open file descriptors", unit: unitCount, servers: fdsChart},
	{id: "conns", title: "Mirror client connections", unit: unitCount, servers: connsChart},
	{id: "generator", title: "Load generator timer lag", unit: unitMs, viewers: generatorChart},
}

// line builds a line of n points from f, merging steps when n exceeds maxPoints.
func line(name string, n int, f func(i int) (t float64, v Num)) Line {
	k := 1
	if n > maxPoints {
		k = (n + maxPoints - 1) / maxPoints
	}
	l := Line{Name: name, T: make([]Num, 0, n/k+1), V: make([]Num, 0, n/k+1)}
	for i := 0; i < n; i += k {
		var t float64
		sum, m, hole := 0.0, 0, false
		for j := i; j < min(i+k, n); j++ {
			tj, v := f(j)
			t = tj
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				hole = true
				continue
			}
			sum += float64(v)
			m++
		}
		v := gap
		if !hole && m > 0 {
			v = Num(sum / float64(m))
		}
		l.T = append(l.T, Num(t))
		l.V = append(l.V, v)
	}
	return l
}

// stepOf is a series' step, 1 s when the file does not say.
func stepOf(s *Series) float64 {
	if s.StepS > 0 {
		return s.StepS
	}
	return 1
}

func viewersChart(s *Series, t *Tuning) *Chart {
	n := len(s.Points)
	c := &Chart{Note: "target " + strconv.Itoa(t.Viewers.Target) + ", peak " + strconv.Itoa(t.Viewers.Peak)}
	c.Lines = append(c.Lines,
		line("in a session", n, func(i int) (float64, Num) { return s.Points[i].T, Num(s.Points[i].Active) }),
		line("stalled", n, func(i int) (float64, Num) { return s.Points[i].T, Num(s.Points[i].Stalled) }))
	return c
}

func requestsChart(s *Series, t *Tuning) *Chart {
	n, step := len(s.Points), stepOf(s)
	c := &Chart{Note: formatCount(t.Requests.Playlist+t.Requests.Segment+t.Requests.Heartbeat) + " requests in all"}
	c.Lines = append(c.Lines,
		line("segment", n, func(i int) (float64, Num) { return s.Points[i].T, Num(float64(s.Points[i].Requests.Segment) / step) }),
		line("playlist", n, func(i int) (float64, Num) { return s.Points[i].T, Num(float64(s.Points[i].Requests.Playlist) / step) }))
	if t.Requests.Heartbeat > 0 {
		c.Lines = append(c.Lines, line("heartbeat", n, func(i int) (float64, Num) {
			return s.Points[i].T, Num(float64(s.Points[i].Requests.Heartbeat) / step)
		}))
	}
	return c
}

// latencyChart draws a step's quantiles; a step without such requests has no
// latency (a gap), not a latency of zero.
func latencyChart(segment bool) func(*Series, *Tuning) *Chart {
	return func(s *Series, t *Tuning) *Chart {
		n := len(s.Points)
		q := func(i int) (PointQuantiles, bool) {
			p := &s.Points[i]
			if segment {
				return p.SegmentMs, p.Requests.Segment > 0
			}
			return p.PlaylistMs, p.Requests.Playlist > 0
		}
		pick := func(name string, get func(PointQuantiles) float64) Line {
			return line(name, n, func(i int) (float64, Num) {
				v, ok := q(i)
				if !ok {
					return s.Points[i].T, gap
				}
				return s.Points[i].T, Num(get(v))
			})
		}
		whole := t.LatencyMs.Playlist
		if segment {
			whole = t.LatencyMs.Segment
		}
		c := &Chart{Note: "run: p50 " + formatMs(whole.P50) + ", p99 " + formatMs(whole.P99) + ", max " + formatMs(whole.Max)}
		c.Lines = append(c.Lines,
			pick("p50", func(q PointQuantiles) float64 { return q.P50 }),
			pick("p99", func(q PointQuantiles) float64 { return q.P99 }))
		if segment {
			c.Lines = append(c.Lines, line("TTFB p99", n, func(i int) (float64, Num) {
				p := &s.Points[i]
				if p.Requests.Segment == 0 {
					return p.T, gap
				}
				return p.T, Num(p.SegmentTTFBMs.P99)
			}))
		}
		return c
	}
}

func stallsChart(s *Series, t *Tuning) *Chart {
	n, step := len(s.Points), stepOf(s)
	c := &Chart{Note: formatCount(t.Stalls.Count) + " stalls, " + formatFloat(t.Stalls.Seconds) + " s stalled, rebuffer ratio " + formatPercent(t.Stalls.RebufferRatio)}
	c.Lines = append(c.Lines,
		line("viewers stalled", n, func(i int) (float64, Num) { return s.Points[i].T, Num(s.Points[i].Stalled) }),
		line("stalls begun per s", n, func(i int) (float64, Num) { return s.Points[i].T, Num(float64(s.Points[i].Stalls) / step) }))
	return c
}

// errorsChart draws one line per class seen, most frequent first; a run without
// errors gets one flat line, so "none" is drawn rather than left blank.
func errorsChart(s *Series, t *Tuning) *Chart {
	n, step := len(s.Points), stepOf(s)
	totals := map[string]int64{}
	for _, p := range s.Points {
		for class, v := range p.Errors {
			totals[class] += v
		}
	}
	var classes []string
	for class, v := range totals {
		if v > 0 {
			classes = append(classes, class)
		}
	}
	sort.Slice(classes, func(i, j int) bool {
		if totals[classes[i]] != totals[classes[j]] {
			return totals[classes[i]] > totals[classes[j]]
		}
		return classes[i] < classes[j]
	})
	c := &Chart{Note: "none"}
	if t.Errors.Total > 0 {
		c.Note = formatCount(t.Errors.Total) + " errors, " + formatPercent(t.Errors.Rate) + " of requests"
	}
	if len(classes) == 0 {
		c.Lines = append(c.Lines, line("errors", n, func(i int) (float64, Num) { return s.Points[i].T, 0 }))
		return c
	}
	for _, class := range classes {
		c.Lines = append(c.Lines, line(class, n, func(i int) (float64, Num) {
			return s.Points[i].T, Num(float64(s.Points[i].Errors[class]) / step)
		}))
	}
	return c
}

// counterChart compares the counter's answers with the viewers really in a session. A
// step in which no answer came (the counter down or frozen) is a gap: the holes of
// the story's graph.
func counterChart(s *Series, t *Tuning) *Chart {
	answered := false
	for _, p := range s.Points {
		if p.CounterAnswer >= 0 || p.Requests.Heartbeat > 0 {
			answered = true
			break
		}
	}
	if !answered && t.Requests.Heartbeat == 0 {
		return nil // no counter in this run
	}
	n := len(s.Points)
	c := &Chart{Note: "largest error " + formatCount(t.Counter.MaxAbsError)}
	if t.Counter.Crashes > 0 {
		c.Note += ", " + formatCount(t.Counter.Crashes) + " crashes"
	}
	c.Lines = append(c.Lines,
		line("true viewers", n, func(i int) (float64, Num) { return s.Points[i].T, Num(s.Points[i].Truth) }),
		line("counter's answer", n, func(i int) (float64, Num) {
			if s.Points[i].CounterAnswer < 0 {
				return s.Points[i].T, gap
			}
			return s.Points[i].T, Num(s.Points[i].CounterAnswer)
		}))
	c.Holes = holes(n, func(i int) (float64, bool) { return s.Points[i].T, s.Points[i].CounterAnswer < 0 }, "no answer from the counter")
	return c
}

// holes merges consecutive steps without a value into spans; a step covers the time
// from the previous point to its own.
func holes(n int, missing func(i int) (t float64, none bool), label string) []Span {
	var out []Span
	prev := 0.0
	for i := 0; i < n; i++ {
		t, none := missing(i)
		if none {
			if k := len(out); k > 0 && float64(out[k-1].To) == prev {
				out[k-1].To = Num(t)
			} else {
				out = append(out, Span{From: Num(prev), To: Num(t), Label: label})
			}
		}
		prev = t
	}
	return out
}

func generatorChart(s *Series, t *Tuning) *Chart {
	n := len(s.Points)
	g := t.Generator
	note := "CPU " + formatFloat(g.CPUSeconds) + " s, RSS " + formatBytes(g.MaxRSSBytes) + ", lag p99 " + formatMs(g.LagP99Ms)
	if g.Bound {
		note += ": BOUND, the run is invalid"
	}
	c := &Chart{Note: note}
	c.Lines = append(c.Lines,
		line("lag p99", n, func(i int) (float64, Num) { return s.Points[i].T, Num(s.Points[i].LagP99Ms) }),
		line("lag max", n, func(i int) (float64, Num) { return s.Points[i].T, Num(s.Points[i].LagMaxMs) }))
	return c
}

// procLine draws one server's value over the run; a scrape it did not answer is a gap.
func procLine(s *ServerSeries, name string, f func(p ProcessPoint, dt float64) Num) Line {
	return line(name, len(s.Points), func(i int) (float64, Num) {
		pt := s.Points[i]
		smp, ok := pt.Procs[name]
		if !ok || !smp.Up {
			return pt.T, gap
		}
		prev := 0.0
		if i > 0 {
			prev = s.Points[i-1].T
		}
		return pt.T, f(smp, pt.T-prev)
	})
}

func hitRatioChart(s *ServerSeries, t *Tuning) *Chart {
	mirrors := s.processes(roleMirror)
	if len(mirrors) == 0 {
		return nil
	}
	c := &Chart{}
	for _, m := range t.Mirrors {
		if c.Note != "" {
			c.Note += ", "
		}
		c.Note += m.Name + " " + formatPercent(m.HitRatio)
	}
	for _, name := range mirrors {
		c.Lines = append(c.Lines, procLine(s, name, func(p ProcessPoint, _ float64) Num {
			if p.HitRatio == nil {
				return gap
			}
			return Num(*p.HitRatio)
		}))
	}
	return c
}

func originChart(s *ServerSeries, t *Tuning) *Chart {
	origins := s.processes(roleOrigin)
	if len(origins) == 0 {
		return nil
	}
	c := &Chart{Note: formatCount(t.Origin.Requests) + " requests in all"}
	for _, name := range origins {
		c.Lines = append(c.Lines, procLine(s, name, func(p ProcessPoint, dt float64) Num {
			return rate(p.Requests, dt)
		}))
	}
	return c
}

func fdsChart(s *ServerSeries, _ *Tuning) *Chart {
	c := &Chart{}
	for _, p := range s.Processes {
		c.Lines = append(c.Lines, procLine(s, p.Name, func(p ProcessPoint, _ float64) Num { return Num(p.OpenFDs) }))
		c.Holes = append(c.Holes, holes(len(s.Points), func(i int) (float64, bool) {
			smp, ok := s.Points[i].Procs[p.Name]
			return s.Points[i].T, !ok || !smp.Up
		}, p.Name+" not answering")...)
	}
	return c
}

func connsChart(s *ServerSeries, _ *Tuning) *Chart {
	c := &Chart{}
	for _, name := range s.processes(roleMirror) {
		c.Lines = append(c.Lines, procLine(s, name, func(p ProcessPoint, _ float64) Num { return Num(p.Conns) }))
	}
	return c
}

func rate(n int64, dt float64) Num {
	if dt <= 0 {
		return gap
	}
	return Num(float64(n) / dt)
}

var (
	crashNote = regexp.MustCompile(`^(\S+) crashed at (-?[0-9.]+)s`)
	faultNote = regexp.MustCompile(`^fault at (-?[0-9.]+)s: (.+)$`)
)

// notesMarks finds the crashes and faults the runner noted ("counter crashed at
// 24.3s: …", "fault at 12.0s: stop counter").
func notesMarks(notes []string) []Mark {
	var out []Mark
	for _, n := range notes {
		if m := crashNote.FindStringSubmatch(n); m != nil {
			if at, err := strconv.ParseFloat(m[2], 64); err == nil {
				out = append(out, Mark{T: at, Label: m[1] + " crashed", Kind: "crash"})
			}
		} else if m := faultNote.FindStringSubmatch(n); m != nil {
			if at, err := strconv.ParseFloat(m[1], 64); err == nil {
				out = append(out, Mark{T: at, Label: m[2], Kind: "fault"})
			}
		}
	}
	return out
}
