package dashboards

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The part of Grafana's classic dashboard model the tests read.
type dashboard struct {
	file       string
	raw        map[string]any
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Schema     int     `json:"schemaVersion"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	X, Y, W, H int
}

type panel struct {
	ID         int      `json:"id"`
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Datasource *dsRef   `json:"datasource"`
	GridPos    gridPos  `json:"gridPos"`
	Repeat     string   `json:"repeat"`
	Targets    []target `json:"targets"`
	Panels     []panel  `json:"panels"` // a collapsed row's panels
}

type target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	Instant      bool   `json:"instant"`
	Range        bool   `json:"range"`
	Format       string `json:"format"`
	Datasource   *dsRef `json:"datasource"`
}

type variable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Query      any    `json:"query"` // a string, or {"query": "..."} for query variables
	Definition string `json:"definition"`
	Multi      bool   `json:"multi"`
	IncludeAll bool   `json:"includeAll"`
	Datasource *dsRef `json:"datasource"`
}

// queryText is a query variable's query, whichever shape Grafana saved it in.
func (v variable) queryText() string {
	switch q := v.Query.(type) {
	case string:
		return q
	case map[string]any:
		s, _ := q["query"].(string)
		return s
	}
	return ""
}

// dsVar is the datasource variable every panel and query must use.
const dsVar = "${DS_PROMETHEUS}"

func loadDashboards(t *testing.T) []*dashboard {
	t.Helper()
	var out []*dashboard
	for _, name := range Files {
		b, err := FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		d := &dashboard{file: name}
		if err := json.Unmarshal(b, d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := json.Unmarshal(b, &d.raw); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, d)
	}
	return out
}

// placed is a panel with the row it sits in (a row's panels follow it until the next
// row, or sit inside it when it is collapsed).
type placed struct {
	panel
	row    *panel
	nested bool // inside a collapsed row
}

func (d *dashboard) allPanels() []placed {
	var out []placed
	var row *panel
	for i := range d.Panels {
		p := &d.Panels[i]
		if p.Type == "row" {
			row = p
			out = append(out, placed{*p, nil, false})
			for _, c := range p.Panels {
				out = append(out, placed{c, p, true})
			}
			continue
		}
		out = append(out, placed{*p, row, false})
	}
	return out
}

func (d *dashboard) variable(name string) (variable, bool) {
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v, true
		}
	}
	return variable{}, false
}

// Grafana's built-in variables a query may use.
var builtins = map[string]bool{
	"__rate_interval": true, "__interval": true, "__interval_ms": true,
	"__range": true, "__range_s": true, "__range_ms": true,
}

// varRef finds variable references: ${name}, ${name:format}, [[name]], $name.
var varRef = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)`)

// expander substitutes Grafana's variables as the Prometheus datasource does.
type expander struct {
	values   map[string][]string // a dashboard variable's selected values
	multi    map[string]bool     // multi-value or include-all: formatted as a regex
	rng      time.Duration       // the dashboard's time range
	interval time.Duration       // $__interval
	scrape   time.Duration       // the datasource's scrape interval
}

// rateInterval is Grafana's $__rate_interval: max($__interval + scrape, 4 × scrape).
func (e *expander) rateInterval() time.Duration {
	return max(e.interval+e.scrape, 4*e.scrape)
}

func promDur(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// regexEscape escapes a value for a =~ matcher inside a PromQL string literal, as
// Grafana's prometheusSpecialRegexEscape does (the backslash itself doubled once more
// for the string literal).
func regexEscape(v string) string {
	var b strings.Builder
	for _, r := range v {
		if strings.ContainsRune(`\$^*{}[]'+?.()|`, r) {
			b.WriteString(`\\`)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (e *expander) expand(s string) (string, error) {
	var bad []string
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		sm := varRef.FindStringSubmatch(m)
		name, format := sm[1], sm[2]
		if sm[3] != "" {
			name, format = sm[3], sm[4]
		}
		if sm[5] != "" {
			name = sm[5]
		}
		switch name {
		case "__rate_interval":
			return promDur(e.rateInterval())
		case "__interval":
			return promDur(e.interval)
		case "__interval_ms":
			return strconv.FormatInt(e.interval.Milliseconds(), 10)
		case "__range":
			return promDur(e.rng)
		case "__range_s":
			return strconv.FormatInt(int64(e.rng/time.Second), 10)
		case "__range_ms":
			return strconv.FormatInt(e.rng.Milliseconds(), 10)
		}
		vals, ok := e.values[name]
		if !ok {
			bad = append(bad, m)
			return m
		}
		switch {
		case format == "raw":
			return strings.Join(vals, ",")
		case format == "pipe":
			return strings.Join(vals, "|")
		case format == "" && !e.multi[name] && len(vals) == 1:
			return vals[0]
		case format == "" || format == "regex":
			esc := make([]string, len(vals))
			for i, v := range vals {
				esc[i] = regexEscape(v)
			}
			if len(esc) == 1 {
				return esc[0]
			}
			return "(" + strings.Join(esc, "|") + ")"
		}
		bad = append(bad, m+" (unknown format)")
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("undefined variables %v in %q", bad, s)
	}
	return out, nil
}

// labelValues parses `label_values(selector, label)` (or `label_values(label)`).
var labelValuesCall = regexp.MustCompile(`^\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*$`)

// byClause finds the label lists of aggregations: `by (a, b)`.
var byClause = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)

// selector finds metric selectors with matchers: name{...}.
var selector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)

// bareMetric finds a stampede, process or Go metric named without matchers.
var bareMetric = regexp.MustCompile(`\b((?:stampede|process|go)_[a-zA-Z0-9_:]*)\b([^{a-zA-Z0-9_:]|$)`)

func labelSet(list string) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(list, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out[l] = true
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
