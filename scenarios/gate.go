package scenarios

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stampede-live/stampede/loadgen/report"
)

// Gate defaults (`stampede gate` flags point here).
const (
	// DefaultMaxRegression is how much worse a latency quantile may be than the
	// baseline's before the gate fails (0.10 = 10 %).
	DefaultMaxRegression = 0.10
	// DefaultLatencyFloor is an absolute allowance added to every latency comparison:
	// on a shared or noisy machine a 2 ms p50 becoming 4 ms is noise, not a regression,
	// although it doubled. A quantile fails only when it exceeds
	// baseline × (1 + max-regression) + floor.
	DefaultLatencyFloor = 5 * time.Millisecond
)

// ErrBadInput marks a gate that could not be evaluated (exit 2): no tunings, a recorded
// gate that does not parse, a tuning filter naming nothing, nothing to check.
var ErrBadInput = errors.New("bad gate input")

func badInput(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, a...))
}

// GateConfig says what to check besides the thresholds the summary recorded.
type GateConfig struct {
	// Thresholds are checked on every tuning, in addition to each tuning's recorded gates.
	Thresholds []Threshold
	// Tunings restricts the gate to these tunings (all when empty).
	Tunings []string
	// Baseline, when set, is compared tuning by tuning (matched by name).
	Baseline *report.Summary
	// MaxRegression is the fraction a latency quantile may grow over the baseline;
	// 0 means DefaultMaxRegression (for a near-strict gate give a tiny value).
	MaxRegression float64
	// LatencyFloor is the absolute allowance on latency comparisons; 0 means
	// DefaultLatencyFloor.
	LatencyFloor time.Duration
}

// CheckKind tells the checks of a verdict apart.
type CheckKind string

// Kinds of check.
const (
	CheckThreshold  CheckKind = "threshold"  // a threshold (recorded in the summary or given)
	CheckRegression CheckKind = "regression" // a figure compared with the baseline's
	CheckValidity   CheckKind = "validity"   // the run itself is trustworthy (generator, completeness)
	CheckExpect     CheckKind = "expect"     // a tuning's expected outcome (Expectations)
)

// Check is one line of a verdict.
type Check struct {
	Tuning   string
	Kind     CheckKind
	Name     string  // the metric, or what a validity check looks at
	Rule     string  // what must hold, in words or as a threshold
	Value    float64 // the figure checked, in its metric's unit
	Baseline float64 // the baseline's figure (regression checks)
	Pass     bool
	Detail   string // why it failed when the rule alone does not say
}

// Verdict is the outcome of a gate: pass only if every check passed.
type Verdict struct {
	Scenario string
	Run      string
	Checks   []Check
	Pass     bool
}

// Failed returns the failing checks.
func (v *Verdict) Failed() []Check {
	var out []Check
	for _, c := range v.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// regressionQuantiles are compared with a tolerance; counts are compared exactly.
var regressionQuantiles = func() []string {
	var out []string
	for _, p := range []string{"segment", "ttfb", "playlist", "heartbeat", "startup", "live_latency"} {
		for _, q := range []string{"p50", "p90", "p99"} {
			out = append(out, p+"_"+q)
		}
	}
	return out
}()

// regressionCounts may not grow at all: one more stall or error is a regression.
var regressionCounts = append([]string{"stall_count", "errors", "counter_crashes"}, func() []string {
	out := make([]string, len(errorClasses))
	for i, c := range errorClasses {
		out[i] = "error_" + c
	}
	return out
}()...)

// Gate checks summary s: for every tuning, its recorded gates and cfg.Thresholds, that
// the generator kept up, and, with a baseline, regressions. A run whose generator was
// bound, or which was interrupted, never passes. The error is ErrBadInput-wrapped when
// the input cannot be gated.
func Gate(s *report.Summary, cfg GateConfig) (*Verdict, error) {
	if s == nil || len(s.Tunings) == 0 {
		return nil, badInput("the summary has no tunings")
	}
	if cfg.MaxRegression < 0 || cfg.LatencyFloor < 0 {
		return nil, badInput("max regression and latency floor must not be negative")
	}
	if cfg.MaxRegression == 0 {
		cfg.MaxRegression = DefaultMaxRegression
	}
	if cfg.LatencyFloor == 0 {
		cfg.LatencyFloor = DefaultLatencyFloor
	}
	tunings := s.Tunings
	if len(cfg.Tunings) > 0 {
		tunings = nil
		for _, name := range cfg.Tunings {
			t := findTuning(s.Tunings, name)
			if t == nil {
				have := make([]string, len(s.Tunings))
				for i, t := range s.Tunings {
					have[i] = t.Name
				}
				return nil, badInput("no tuning %q in the summary (have %s)", name, quoteList(have))
			}
			tunings = append(tunings, *t)
		}
	}

	v := &Verdict{Scenario: s.Scenario, Run: s.Run}
	checked := 0
	if s.Incomplete {
		v.Checks = append(v.Checks, Check{Kind: CheckValidity, Name: "complete", Rule: "the run reached its planned end",
			Detail: "the run was interrupted; its figures cover only part of it"})
	}
	for i := range tunings {
		t := &tunings[i]
		v.Checks = append(v.Checks, Check{Tuning: t.Name, Kind: CheckValidity, Name: "generator_bound",
			Rule: "generator kept up (not bound)", Value: b2f(t.Generator.Bound), Pass: !t.Generator.Bound,
			Detail: map[bool]string{true: "the load generator fell behind its schedule: the run is invalid"}[t.Generator.Bound]})

		seen := map[string]bool{}
		for _, g := range t.Gates {
			th, err := ParseThreshold(g.Threshold)
			if err != nil {
				return nil, badInput("tuning %q: recorded gate %q: %v", t.Name, g.Threshold, err)
			}
			seen[th.text] = true
			v.Checks = append(v.Checks, thresholdCheck(t, th, s.Tunings))
			checked++
		}
		for _, th := range cfg.Thresholds {
			if seen[th.text] {
				continue
			}
			seen[th.text] = true
			v.Checks = append(v.Checks, thresholdCheck(t, th, s.Tunings))
			checked++
		}
		if cfg.Baseline != nil {
			v.Checks = append(v.Checks, regressions(t, cfg.Baseline, cfg)...)
			checked++
		}
	}
	if checked == 0 {
		return nil, badInput("nothing to check: the summary records no gates; give --threshold or --baseline")
	}
	v.Pass = true
	for _, c := range v.Checks {
		v.Pass = v.Pass && c.Pass
	}
	return v, nil
}

func thresholdCheck(t *report.Tuning, th Threshold, all []report.Tuning) Check {
	r := th.Eval(t, all)
	c := Check{Tuning: t.Name, Kind: CheckThreshold, Name: th.Metric, Rule: th.text, Value: r.Value, Pass: r.Pass, Detail: r.Detail}
	if th.Ref != nil && r.Detail == "" {
		c.Baseline = r.Against
		c.Detail = fmt.Sprintf("%s is %s", th.Ref.Tuning+"."+th.Ref.Metric, formatValue(th.Ref.Metric, r.Against))
	}
	return c
}

// regressions compares tuning t with the baseline's tuning of the same name.
func regressions(t *report.Tuning, base *report.Summary, cfg GateConfig) []Check {
	b := findTuning(base.Tunings, t.Name)
	if b == nil {
		return []Check{{Tuning: t.Name, Kind: CheckRegression, Name: "baseline", Rule: "a baseline tuning of the same name",
			Pass: true, Detail: "not in the baseline: nothing to compare (new tuning)"}}
	}
	var out []Check
	comparable := Check{Tuning: t.Name, Kind: CheckRegression, Name: "comparable", Rule: "same viewers and duration as the baseline", Pass: true}
	switch {
	case b.Generator.Bound:
		comparable.Pass, comparable.Detail = false, "the baseline's generator was bound: the baseline is invalid"
	case base.Incomplete:
		comparable.Pass, comparable.Detail = false, "the baseline run was interrupted"
	case b.Viewers.Target != t.Viewers.Target:
		comparable.Pass, comparable.Detail = false, fmt.Sprintf("viewers %d, baseline %d: counts are not comparable", t.Viewers.Target, b.Viewers.Target)
	case t.DurationS > 0 && b.DurationS > 0 && math.Abs(t.DurationS-b.DurationS) > 1:
		comparable.Pass, comparable.Detail = false, fmt.Sprintf("duration %gs, baseline %gs: counts are not comparable", t.DurationS, b.DurationS)
	}
	out = append(out, comparable)
	if !comparable.Pass {
		return out
	}
	tol := cfg.MaxRegression
	floorMs := float64(cfg.LatencyFloor) / float64(time.Millisecond)
	for _, name := range regressionQuantiles {
		m := metricByID[name]
		cur, _ := m.get(t)
		old, _ := m.get(b)
		floor := floorMs
		if m.kind == kindSeconds {
			floor = floorMs / 1000
		}
		limit := old*(1+tol) + floor
		out = append(out, Check{Tuning: t.Name, Kind: CheckRegression, Name: name,
			Rule:  fmt.Sprintf("%s <= baseline +%s +%s", name, trimFloat(tol*100)+"%", cfg.LatencyFloor),
			Value: cur, Baseline: old, Pass: cur <= limit,
			Detail: failDetail(cur > limit, "limit %s", formatValue(name, limit))})
	}
	for _, name := range regressionCounts {
		m := metricByID[name]
		cur, _ := m.get(t)
		old, _ := m.get(b)
		if cur == 0 && old == 0 && strings.HasPrefix(name, "error_") {
			continue // keep the table short: classes neither run saw
		}
		out = append(out, Check{Tuning: t.Name, Kind: CheckRegression, Name: name,
			Rule:  name + " <= baseline (exact)",
			Value: cur, Baseline: old, Pass: cur <= old,
			Detail: failDetail(cur > old, "%s more than the baseline", trimFloat(cur-old))})
	}
	return out
}

func failDetail(failed bool, format string, a ...any) string {
	if !failed {
		return ""
	}
	return fmt.Sprintf(format, a...)
}

func trimFloat(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

// WriteTable prints the verdict as an aligned table followed by a one-line result.
func (v *Verdict) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNING\tKIND\tCHECK\tVALUE\tBASELINE\tRESULT\tDETAIL")
	for _, c := range v.Checks {
		tuning := c.Tuning
		if tuning == "" {
			tuning = "(run)"
		}
		value, baseline := "", ""
		if _, err := lookupMetric(c.Name); err == nil {
			value = formatValue(c.Name, c.Value)
			if c.Kind == CheckRegression {
				baseline = formatValue(c.Name, c.Baseline)
			}
		}
		result := "ok"
		if !c.Pass {
			result = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tuning, c.Kind, c.Rule, value, baseline, result, c.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	failed := len(v.Failed())
	if v.Pass {
		_, err := fmt.Fprintf(w, "\nPASS: %d checks\n", len(v.Checks))
		return err
	}
	_, err := fmt.Fprintf(w, "\nFAIL: %d of %d checks failed\n", failed, len(v.Checks))
	return err
}

// JUnit XML, as read by Jenkins, GitLab and GitHub test reporters: one testsuite per
// tuning, one testcase per check.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the verdict as JUnit XML.
func (v *Verdict) WriteJUnit(w io.Writer) error {
	root := junitSuites{Name: "stampede gate"}
	scenario := v.Scenario
	if scenario == "" {
		scenario = "scenario"
	}
	index := map[string]int{}
	for _, c := range v.Checks {
		suite := c.Tuning
		if suite == "" {
			suite = "(run)"
		}
		i, ok := index[suite]
		if !ok {
			i = len(root.Suites)
			index[suite] = i
			root.Suites = append(root.Suites, junitSuite{Name: scenario + "/" + suite})
		}
		tc := junitCase{Name: string(c.Kind) + ": " + c.Rule, Classname: "stampede." + scenario + "." + suite}
		if !c.Pass {
			msg := fmt.Sprintf("%s: value %s", c.Rule, formatValue(c.Name, c.Value))
			if c.Detail != "" {
				msg += " (" + c.Detail + ")"
			}
			tc.Failure = &junitFailure{Message: msg, Type: string(c.Kind), Text: msg}
			root.Suites[i].Failures++
			root.Failures++
		}
		root.Suites[i].Cases = append(root.Suites[i].Cases, tc)
		root.Suites[i].Tests++
		root.Tests++
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(root); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// Evaluate checks thresholds against tuning t of a run (all is every tuning, for
// references) and returns the summary.json gates and whether the tuning passes: every
// threshold held and the generator kept up. The bench fills Tuning.Gates and Tuning.Pass
// from it.
func Evaluate(ths []Threshold, t *report.Tuning, all []report.Tuning) ([]report.GateResult, bool) {
	pass := !t.Generator.Bound
	out := make([]report.GateResult, 0, len(ths))
	for _, th := range ths {
		r := th.Eval(t, all)
		out = append(out, r.GateResult())
		pass = pass && r.Pass
	}
	return out, pass
}

// Expectations checks each tuning's `expect` list against a run's summary: the lesson
// held when every check passes. Tunings the run did not include are skipped.
func Expectations(s *Scenario, sum *report.Summary) []Check {
	var out []Check
	for _, tun := range s.Tunings {
		rt := findTuning(sum.Tunings, tun.Name)
		if rt == nil {
			continue
		}
		for _, th := range tun.Expect {
			c := thresholdCheck(rt, th, sum.Tunings)
			c.Kind = CheckExpect
			out = append(out, c)
		}
	}
	return out
}
