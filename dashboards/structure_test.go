package dashboards

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// TestFilesAreTheDashboards: the embedded files are exactly the dashboards listed.
func TestFilesAreTheDashboards(t *testing.T) {
	found, err := fs.Glob(FS, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(Files)
	slices.Sort(want)
	if !slices.Equal(found, want) {
		t.Fatalf("dashboards on disk %v, Files lists %v", found, want)
	}
}

// TestStructure checks what Grafana needs to import the dashboards unchanged and
// what keeps them honest: unique uids and panel ids, no __inputs, the datasource
// variable on every panel and query, every $variable defined, panels not
// overlapping, and every aggregation keeping run and tuning apart.
func TestStructure(t *testing.T) {
	uids, titles := map[string]string{}, map[string]string{}
	for _, d := range loadDashboards(t) {
		t.Run(d.file, func(t *testing.T) {
			if _, ok := d.raw["__inputs"]; ok {
				t.Error("has __inputs: the datasource is chosen by the DS_PROMETHEUS variable, not at import")
			}
			if _, ok := d.raw["id"]; ok {
				t.Error("has an id: Grafana assigns it; a saved one clashes on import")
			}
			if d.UID == "" || len(d.UID) > 40 {
				t.Errorf("uid %q: want 1 to 40 characters", d.UID)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("uid %s also used by %s", d.UID, other)
			}
			uids[d.UID] = d.file
			if other, dup := titles[d.Title]; dup || d.Title == "" {
				t.Errorf("title %q empty or also used by %s", d.Title, other)
			}
			titles[d.Title] = d.file
			if d.Schema < 36 {
				t.Errorf("schemaVersion %d: want the current classic model (>= 36)", d.Schema)
			}

			// Variables: the datasource, run and tuning everywhere.
			ds, ok := d.variable("DS_PROMETHEUS")
			if !ok || ds.Type != "datasource" || ds.queryText() != "prometheus" {
				t.Errorf("DS_PROMETHEUS: %+v, want a datasource variable of type prometheus", ds)
			}
			for _, name := range []string{"run", "tuning"} {
				v, ok := d.variable(name)
				if !ok {
					t.Errorf("no %s variable", name)
					continue
				}
				if v.Type != "query" || !labelValuesCall.MatchString(v.queryText()) || !v.Multi || !v.IncludeAll {
					t.Errorf("variable %s: %+v, want a multi-value label_values query with All", name, v)
				}
			}
			for _, v := range d.Templating.List {
				if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != dsVar) {
					t.Errorf("variable %s does not query through %s", v.Name, dsVar)
				}
			}
			defined := map[string]bool{}
			for _, v := range d.Templating.List {
				defined[v.Name] = true
			}

			ids := map[int]string{}
			var boxes []placed
			for _, p := range d.allPanels() {
				if other, dup := ids[p.ID]; dup || p.ID <= 0 {
					t.Errorf("panel %q: id %d not unique and positive (also %q)", p.Title, p.ID, other)
				}
				ids[p.ID] = p.Title
				if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
				}
				boxes = append(boxes, p)
				if p.Type == "row" {
					if len(p.Targets) > 0 {
						t.Errorf("row %q has queries", p.Title)
					}
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != dsVar || p.Datasource.Type != "prometheus" {
					t.Errorf("panel %q: datasource %+v, want %s", p.Title, p.Datasource, dsVar)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				texts := []string{p.Title}
				for _, tg := range p.Targets {
					where := p.Title + "/" + tg.RefID
					if tg.Datasource == nil || tg.Datasource.UID != dsVar {
						t.Errorf("%s: datasource %+v, want %s", where, tg.Datasource, dsVar)
					}
					if tg.Instant == tg.Range {
						t.Errorf("%s: instant %v range %v: say which", where, tg.Instant, tg.Range)
					}
					if (p.Type == "bargauge" || p.Type == "table") != tg.Instant {
						t.Errorf("%s: a %s panel wants instant=%v", where, p.Type, !tg.Instant)
					}
					for _, p := range exprProblems(tg.Expr) {
						t.Errorf("%s: %s", where, p)
					}
					texts = append(texts, tg.Expr, tg.LegendFormat)
				}
				if p.row != nil {
					texts = append(texts, p.row.Title)
				}
				for _, s := range texts {
					for _, m := range varRef.FindAllStringSubmatch(s, -1) {
						name := m[1] + m[3] + m[5]
						if !defined[name] && !builtins[name] {
							t.Errorf("panel %q uses $%s, which is not defined", p.Title, name)
						}
					}
				}
			}
			for i := range boxes {
				for j := i + 1; j < len(boxes); j++ {
					a, b := boxes[i].GridPos, boxes[j].GridPos
					if boxes[i].nested || boxes[j].nested {
						continue // inside a collapsed row: placed when it opens
					}
					if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
						t.Errorf("panels %q and %q overlap: %+v %+v", boxes[i].Title, boxes[j].Title, a, b)
					}
				}
			}
		})
	}
}

// exprProblems: every selector filters on $run and $tuning, no stampede metric goes
// unfiltered, and every aggregation keeps run and tuning (runs are compared, not summed).
func exprProblems(expr string) []string {
	var out []string
	if strings.TrimSpace(expr) == "" {
		return []string{"empty query"}
	}
	sels := selector.FindAllStringSubmatch(expr, -1)
	if len(sels) == 0 {
		out = append(out, "no metric selector")
	}
	for _, s := range sels {
		if !strings.Contains(s[2], `run=~"$run"`) || !strings.Contains(s[2], `tuning=~"$tuning"`) {
			out = append(out, "selector "+s[0]+` does not filter on run=~"$run" and tuning=~"$tuning"`)
		}
	}
	for _, m := range bareMetric.FindAllStringSubmatch(expr, -1) {
		out = append(out, "metric "+m[1]+" without a selector (run and tuning unfiltered)")
	}
	if strings.Contains(expr, "without") {
		out = append(out, "aggregates `without`: say `by (run, tuning, ...)`")
	}
	for _, m := range byClause.FindAllStringSubmatch(expr, -1) {
		ls := labelSet(m[1])
		if !ls["run"] || !ls["tuning"] {
			out = append(out, "`by ("+m[1]+")` drops run or tuning: runs would be summed")
		}
	}
	return out
}

// TestStructureFindsMistakes: the query checks reject the mistakes they exist for.
func TestStructureFindsMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
	}{
		// Runs summed together.
		{"by run only", `sum by (run) (stampede_viewers_active{run=~"$run", tuning=~"$tuning"})`},
		// A selector that ignores the variables.
		{"unfiltered selector", `sum by (run, tuning) (stampede_viewers_active{kind="x"})`},
		// A metric with no selector at all.
		{"bare metric", `sum by (run, tuning) (stampede_viewers_active)`},
		// without() hides which labels survive.
		{"without", `sum without (instance) (stampede_viewers_active{run=~"$run", tuning=~"$tuning"})`},
	} {
		if len(exprProblems(tc.expr)) == 0 {
			t.Errorf("%s: %q passed the checks", tc.name, tc.expr)
		}
	}
	good := `histogram_quantile(0.99, sum by (run, tuning, le) (rate(stampede_viewers_ttfb_seconds_bucket{kind="segment", run=~"$run", tuning=~"$tuning"}[$__rate_interval])))`
	if p := exprProblems(good); len(p) > 0 {
		t.Errorf("a correct query failed the checks: %v", p)
	}
}

// TestComparisonDashboard: the comparison board has a bar per run and tuning for the
// key figures, a table, and time series whose legends name the run.
func TestComparisonDashboard(t *testing.T) {
	var d *dashboard
	for _, x := range loadDashboards(t) {
		if x.file == "tuning-comparison.json" {
			d = x
		}
	}
	kinds := map[string]int{}
	for _, p := range d.allPanels() {
		kinds[p.Type]++
		for _, tg := range p.Targets {
			// One series per run and tuning: the outermost grouping (the first in the
			// text) is (run, tuning), plus le where histogram_quantile consumes it. The
			// live test proves the result has exactly one series per run and tuning.
			m := byClause.FindStringSubmatch(tg.Expr)
			if m == nil {
				t.Errorf("%s/%s: no grouping by (run, tuning): %s", p.Title, tg.RefID, tg.Expr)
				continue
			}
			ls := labelSet(m[1])
			delete(ls, "le")
			if got := strings.Join(sortedKeys(ls), ", "); got != "run, tuning" {
				t.Errorf("%s/%s: groups by (%s), want (run, tuning) so each run and tuning is one bar or line", p.Title, tg.RefID, m[1])
			}
			if strings.Contains(tg.Expr, "[$__range") != (p.Type != "timeseries") {
				t.Errorf("%s/%s: figures over the range use [$__range], series over time do not", p.Title, tg.RefID)
			}
			if p.Type == "timeseries" && !strings.Contains(tg.LegendFormat, "{{run}}") {
				t.Errorf("%s/%s: legend %q does not name the run", p.Title, tg.RefID, tg.LegendFormat)
			}
		}
	}
	if kinds["bargauge"] < 8 || kinds["table"] != 1 || kinds["timeseries"] < 4 {
		t.Errorf("panels by type %v: want >= 8 bar gauges, 1 table, >= 4 time series", kinds)
	}
}

// TestRunDetailRepeatsMirrors: one row per server role, the mirror row repeated by
// the instance variable, and its panels filtered by it.
func TestRunDetailRepeatsMirrors(t *testing.T) {
	var d *dashboard
	for _, x := range loadDashboards(t) {
		if x.file == "run-detail.json" {
			d = x
		}
	}
	inst, ok := d.variable("instance")
	if !ok || inst.Type != "query" || !strings.Contains(inst.queryText(), "stampede_mirror_") || !inst.Multi {
		t.Fatalf("instance variable %+v: want a multi-value label_values over mirror metrics", inst)
	}
	rows := map[string]*panel{}
	for i := range d.Panels {
		if d.Panels[i].Type == "row" {
			rows[strings.Fields(d.Panels[i].Title)[0]] = &d.Panels[i]
		}
	}
	for _, role := range []string{"Viewers", "Origin", "Mirror", "Counter"} {
		if rows[role] == nil {
			t.Errorf("no %s row (rows: %v)", role, rows)
		}
	}
	if m := rows["Mirror"]; m == nil || m.Repeat != "instance" || !strings.Contains(m.Title, "$instance") {
		t.Fatalf("mirror row %+v: want repeat on instance, titled by it", m)
	}
	n := 0
	for _, p := range d.allPanels() {
		if p.row == rows["Mirror"] {
			n++
			for _, tg := range p.Targets {
				if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
					t.Errorf("mirror panel %s/%s is not filtered by $instance", p.Title, tg.RefID)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("%d panels in the mirror row, want the hit ratio, requests, upstream, connections and FDs", n)
	}
}
