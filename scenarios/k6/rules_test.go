package k6

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/stampede-live/stampede/loadgen"
)

// TestRulesUseLoadgensBuckets: the classic buckets the recording rules compute for k6
// runs are exactly the bounds of the histograms `stampede viewers` exports, so one
// dashboard query reads both; a bucket changed in loadgen/metrics.go fails here until
// the rules follow.
func TestRulesUseLoadgensBuckets(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "loadgen", "k6", "prometheus", "k6-stampede.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Record string            `yaml:"record"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	// family{kind} -> bucket bounds the rules record
	got := map[string][]float64{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			fam, ok := strings.CutSuffix(r.Record, "_bucket")
			if !ok || r.Labels["le"] == "+Inf" {
				continue
			}
			le, err := strconv.ParseFloat(r.Labels["le"], 64)
			if err != nil {
				t.Fatalf("%s: le %q: %v", r.Record, r.Labels["le"], err)
			}
			key := fam + "{" + r.Labels["kind"] + "}"
			got[key] = append(got[key], le)
		}
	}

	reg := prometheus.NewRegistry()
	loadgen.NewRecorder(reg, []string{"mirror"})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			kind := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" {
					kind = l.GetValue()
				}
			}
			key := mf.GetName() + "{" + kind + "}"
			if _, mapped := got[key]; !mapped || want[key] != nil {
				continue // not a histogram k6 has (ttfb, lag, pings), or seen for another mirror
			}
			for _, bk := range h.GetBucket() {
				want[key] = append(want[key], bk.GetUpperBound())
			}
		}
	}
	for _, key := range []string{
		"stampede_viewers_request_duration_seconds{segment}", "stampede_viewers_request_duration_seconds{playlist}",
		"stampede_viewers_startup_seconds{}", "stampede_viewers_stall_duration_seconds{}", "stampede_viewers_live_latency_seconds{}",
	} {
		g, w := got[key], want[key]
		sort.Float64s(g)
		if len(w) == 0 {
			t.Errorf("%s: loadgen exports no such histogram", key)
			continue
		}
		if !equalFloats(g, w) {
			t.Errorf("%s: the rules record buckets %v, loadgen's are %v", key, g, w)
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
