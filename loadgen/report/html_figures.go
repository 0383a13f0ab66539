package report

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// pageTuning is a tuning's header: verdict, its figures as a person reads them first,
// its gates and notes.
func pageTuning(t *Tuning, servers bool) PageTuning {
	pt := PageTuning{Name: t.Name, Verdict: tuningVerdict(t), Gates: t.Gates, Notes: t.Notes}
	if pt.Gates == nil {
		pt.Gates = []GateResult{}
	}
	add := func(label, text string, bad bool) {
		pt.Figures = append(pt.Figures, Figure{Label: label, Text: text, Bad: bad})
	}
	add("viewers", strconv.Itoa(t.Viewers.Target)+" target, "+strconv.Itoa(t.Viewers.Peak)+" peak, "+
		strconv.Itoa(t.Viewers.Sessions)+" sessions", t.Viewers.Failed > 0)
	add("segment latency", quantiles(t.LatencyMs.Segment, formatMs), false)
	add("playlist latency", quantiles(t.LatencyMs.Playlist, formatMs), false)
	add("startup", "p50 "+formatMs(t.LatencyMs.Startup.P50)+", p90 "+formatMs(t.LatencyMs.Startup.P90), false)
	add("live latency", "p50 "+formatFloat(t.LiveLatencyS.P50)+" s, p99 "+formatFloat(t.LiveLatencyS.P99)+" s", false)
	add("stalls", formatCount(t.Stalls.Count)+" ("+formatFloat(t.Stalls.Seconds)+" s, rebuffer ratio "+
		formatPercent(t.Stalls.RebufferRatio)+")", t.Stalls.Count > 0)
	errText := "none"
	if t.Errors.Total > 0 {
		errText = formatCount(t.Errors.Total) + " (" + formatPercent(t.Errors.Rate) + "): " + classList(t.Errors.ByClass)
	}
	add("errors", errText, t.Errors.Total > 0)
	if servers {
		add("origin requests", formatCount(t.Origin.Requests), false)
		for _, m := range t.Mirrors {
			text := formatPercent(m.HitRatio) + " hits, " + formatCount(m.UpstreamRequests) + " upstream, " +
				formatCount(m.MaxOpenFDs) + " FDs at most"
			if m.EMFILE > 0 || m.Shed > 0 {
				text += ", " + formatCount(m.EMFILE) + " EMFILE, " + formatCount(m.Shed) + " shed"
			}
			label := m.Name
			if m.Kind != "" {
				label += " (" + m.Kind + ")"
			}
			add(label, text, m.EMFILE > 0 || m.Shed > 0)
		}
		add("counter", "largest error "+formatCount(t.Counter.MaxAbsError)+", "+formatCount(t.Counter.Crashes)+" crashes",
			t.Counter.Crashes > 0)
	} else if t.Requests.Heartbeat > 0 {
		add("counter", "largest error "+formatCount(t.Counter.MaxAbsError), false)
	}
	gen := "lag p99 " + formatMs(t.Generator.LagP99Ms) + ", CPU " + formatFloat(t.Generator.CPUSeconds) + " s, RSS " +
		formatBytes(t.Generator.MaxRSSBytes)
	if t.Generator.Bound {
		gen += ": BOUND (fell behind its schedule; the run is invalid)"
	}
	add("generator", gen, t.Generator.Bound)
	return pt
}

func quantiles(q Quantiles, f func(float64) string) string {
	return "p50 " + f(q.P50) + ", p90 " + f(q.P90) + ", p99 " + f(q.P99) + ", max " + f(q.Max)
}

// classList names the error classes seen, most frequent first.
func classList(m map[string]int64) string {
	var classes []string
	for c, v := range m {
		if v > 0 {
			classes = append(classes, c)
		}
	}
	sort.Slice(classes, func(i, j int) bool {
		if m[classes[i]] != m[classes[j]] {
			return m[classes[i]] > m[classes[j]]
		}
		return classes[i] < classes[j]
	})
	parts := make([]string, len(classes))
	for i, c := range classes {
		parts[i] = c + " " + formatCount(m[c])
	}
	return strings.Join(parts, ", ")
}

// barDef is one key figure of the comparison. value returns false when a tuning has
// no such figure; server figures are left out of a run without servers.
type barDef struct {
	id, title, unit, better string
	server                  bool
	value                   func(t *Tuning) (float64, bool)
}

func always(f func(t *Tuning) float64) func(t *Tuning) (float64, bool) {
	return func(t *Tuning) (float64, bool) { return f(t), true }
}

var barDefs = []barDef{
	{id: "segment_p99", title: "Segment latency p99", unit: unitMs, better: "lower",
		value: always(func(t *Tuning) float64 { return t.LatencyMs.Segment.P99 })},
	{id: "playlist_p99", title: "Playlist latency p99", unit: unitMs, better: "lower",
		value: always(func(t *Tuning) float64 { return t.LatencyMs.Playlist.P99 })},
	{id: "startup_p90", title: "Startup p90", unit: unitMs, better: "lower",
		value: always(func(t *Tuning) float64 { return t.LatencyMs.Startup.P90 })},
	{id: "stalls", title: "Stalls", unit: unitCount, better: "lower",
		value: always(func(t *Tuning) float64 { return float64(t.Stalls.Count) })},
	{id: "rebuffer_ratio", title: "Rebuffer ratio", unit: unitRatio, better: "lower",
		value: always(func(t *Tuning) float64 { return t.Stalls.RebufferRatio })},
	{id: "error_rate", title: "Error rate", unit: unitRatio, better: "lower",
		value: always(func(t *Tuning) float64 { return t.Errors.Rate })},
	{id: "origin_requests", title: "Origin requests", unit: unitCount, better: "lower", server: true,
		value: always(func(t *Tuning) float64 { return float64(t.Origin.Requests) })},
	{id: "hit_ratio", title: "Worst mirror hit ratio", unit: unitRatio, better: "higher", server: true,
		value: func(t *Tuning) (float64, bool) {
			if len(t.Mirrors) == 0 {
				return 0, false
			}
			worst := math.Inf(1)
			for _, m := range t.Mirrors {
				worst = math.Min(worst, m.HitRatio)
			}
			return worst, true
		}},
	{id: "max_fds", title: "Most open FDs on a mirror", unit: unitCount, better: "lower", server: true,
		value: func(t *Tuning) (float64, bool) {
			if len(t.Mirrors) == 0 {
				return 0, false
			}
			var most int64
			for _, m := range t.Mirrors {
				most = max(most, m.MaxOpenFDs)
			}
			return float64(most), true
		}},
	{id: "counter_error", title: "Counter's largest error", unit: unitCount, better: "lower",
		value: func(t *Tuning) (float64, bool) { return float64(t.Counter.MaxAbsError), t.Requests.Heartbeat > 0 }},
	{id: "counter_crashes", title: "Counter crashes", unit: unitCount, better: "lower", server: true,
		value: always(func(t *Tuning) float64 { return float64(t.Counter.Crashes) })},
	{id: "lag_p99", title: "Generator timer lag p99", unit: unitMs, better: "lower",
		value: always(func(t *Tuning) float64 { return t.Generator.LagP99Ms })},
	{id: "peak_viewers", title: "Peak viewers", unit: unitCount, better: "higher",
		value: always(func(t *Tuning) float64 { return float64(t.Viewers.Peak) })},
}

// compareBars is the comparison section: a chart per key figure any tuning has.
func compareBars(s *Summary, servers bool) []BarChart {
	out := []BarChart{}
	for _, def := range barDefs {
		if def.server && !servers {
			continue
		}
		bc := BarChart{ID: def.id, Title: def.title, Unit: def.unit, Better: def.better}
		some := false
		for i := range s.Tunings {
			v, ok := def.value(&s.Tunings[i])
			b := Bar{Tuning: s.Tunings[i].Name, Value: gap}
			if ok {
				b.Value, some = Num(v), true
			}
			bc.Bars = append(bc.Bars, b)
		}
		if some {
			out = append(out, bc)
		}
	}
	return out
}

// Formatting for people: short, with the unit.

func formatFloat(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

func formatMs(v float64) string {
	if v >= 10000 {
		return formatFloat(v/1000) + " s"
	}
	return formatFloat(v) + " ms"
}

func formatPercent(r float64) string { return formatFloat(r*100) + "%" }

func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, suffix := float64(n), []string{"KiB", "MiB", "GiB", "TiB"}
	i := -1
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return formatFloat(v) + " " + suffix[i]
}
