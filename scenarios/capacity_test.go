package scenarios

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fakeStep passes below breakAt; at or above bindAt (when set) the generator is bound.
func fakeStep(breakAt, bindAt int, ran *[]int) stepFunc {
	return func(ctx context.Context, n int) (CapacityStep, error) {
		*ran = append(*ran, n)
		st := CapacityStep{Viewers: n, Pass: n < breakAt}
		if bindAt > 0 && n >= bindAt {
			st.Pass, st.Bound = false, true
		}
		if !st.Pass {
			st.Failed = []string{"stall_rate < 0.001 (0.01)"}
		}
		st.Resources.Planner.Viewers = n
		return st, nil
	}
}

func TestCapacitySearch(t *testing.T) {
	// Each row: the search settings, where the fake relay breaks, and what the search must
	// run and conclude.
	for _, tc := range []struct {
		name             string
		c                Capacity
		breakAt, bindAt  int
		steps            []int
		highest, failure int
		limit            string
	}{
		// step up to the first failure, then bisect to the resolution
		{"bisect", Capacity{Start: 500, Step: 500, Max: 3000, Resolution: 100}, 1375, 0,
			[]int{500, 1000, 1500, 1250, 1375, 1312}, 1312, 1375, LimitNone},
		// never breaks: the last step is the maximum itself
		{"holds to max", Capacity{Start: 500, Step: 500, Max: 1200, Resolution: 100}, 99999, 0,
			[]int{500, 1000, 1200}, 1200, 0, LimitNone},
		// the first step breaks: bisect below it
		{"first step breaks", Capacity{Start: 400, Step: 400, Max: 2000, Resolution: 100}, 150, 0,
			[]int{400, 200, 100}, 100, 200, LimitNone},
		// a bound generator ends the search at once: nothing beyond it is measurable
		{"generator bound", Capacity{Start: 500, Step: 500, Max: 3000, Resolution: 100}, 99999, 1500,
			[]int{500, 1000, 1500}, 1000, 1500, LimitGenerator},
		// resolution as wide as the step: no bisect
		{"coarse", Capacity{Start: 100, Step: 100, Max: 1000, Resolution: 100}, 350, 0,
			[]int{100, 200, 300, 400}, 300, 400, LimitNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran []int
			res := &CapacityResult{}
			if err := search(context.Background(), tc.c, fakeStep(tc.breakAt, tc.bindAt, &ran), res, nil); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ran, tc.steps) {
				t.Errorf("steps %v, want %v", ran, tc.steps)
			}
			if res.Highest != tc.highest || res.FirstFailure != tc.failure || res.Limit.Resource != tc.limit {
				t.Errorf("highest %d, first failure %d, limit %q; want %d, %d, %q", res.Highest, res.FirstFailure, res.Limit.Resource, tc.highest, tc.failure, tc.limit)
			}
			if want := tc.highest; want > 0 && res.Planner.Viewers != want {
				t.Errorf("planner figures from %d viewers, want the highest passing step %d", res.Planner.Viewers, want)
			}
		})
	}
}

func TestCapacitySearchInterrupted(t *testing.T) {
	calls := 0
	step := func(ctx context.Context, n int) (CapacityStep, error) {
		calls++
		if calls == 3 {
			return CapacityStep{}, fmt.Errorf("tuning default: %w", ErrInterrupted)
		}
		return CapacityStep{Viewers: n, Pass: true}, nil
	}
	res := &CapacityResult{}
	err := search(context.Background(), Capacity{Start: 100, Step: 100, Max: 1000, Resolution: 10}, step, res, nil)
	if !errors.Is(err, ErrInterrupted) || !res.Incomplete || res.Highest != 200 || len(res.Steps) != 2 {
		t.Errorf("err %v, result %+v: want interrupted after two passing steps", err, res)
	}
}

func TestLimitOf(t *testing.T) {
	// Each row: a failing step's resources and what ran out first.
	for _, tc := range []struct {
		name string
		st   CapacityStep
		want string
	}{
		{"generator first", CapacityStep{Bound: true, Resources: Resources{EMFILE: 3, Cores: 2, MachineBusy: 1}}, LimitGenerator},
		{"emfile", CapacityStep{Resources: Resources{EMFILE: 3, Shed: 9, Cores: 2}}, LimitFDs},
		{"nearly out of files", CapacityStep{Resources: Resources{FDUse: 0.97, Cores: 2}}, LimitFDs},
		{"connection limit", CapacityStep{Resources: Resources{Shed: 9, FDUse: 0.5, Cores: 2}}, LimitConnections},
		{"uplink full", CapacityStep{Resources: Resources{UplinkUse: 0.95, Cores: 2, MachineBusy: 0.9}}, LimitBandwidth},
		{"our processes busy", CapacityStep{Resources: Resources{ServersCPU: 1.2, GeneratorCPU: 0.6, Cores: 2}}, LimitCPU},
		{"machine busy", CapacityStep{Resources: Resources{ServersCPU: 0.2, Cores: 2, MachineBusy: 0.95}}, LimitCPU},
		{"nothing visible", CapacityStep{Failed: []string{"segment_p99 < 500ms (612ms)"}, Resources: Resources{Cores: 2, MachineBusy: 0.4}}, LimitNone},
	} {
		got := limitOf(&tc.st)
		if got.Resource != tc.want || got.Detail == "" {
			t.Errorf("%s: %+v, want %s", tc.name, got, tc.want)
		}
	}
}

func TestParseCPULine(t *testing.T) {
	// Each row: /proc/stat's first line and the busy share of its total.
	for _, tc := range []struct {
		line string
		busy float64
		bad  bool
	}{
		{"cpu  100 0 100 700 100 0 0 0 0 0\n", 0.2, false}, // idle and iowait are not busy
		{"cpu  50 50 0 0 0 0 0 0 25 25\n", 1, false},       // guest time is inside user/nice
		{"cpu0 1 2 3 4 5\n", 0, true},                      // a per-core line
		{"cpu  1 2 x 4 5\n", 0, true},                      // not a number
		{"cpu  1 2\n", 0, true},                            // too short
		{"cpu  -1 2 3 4 5\n", 0, true},                     // negative
	} {
		c, err := parseCPULine(tc.line)
		if (err != nil) != tc.bad || c.busyShare() != tc.busy {
			t.Errorf("parseCPULine(%q) = %+v (busy %v), %v", tc.line, c, c.busyShare(), err)
		}
	}
}

func FuzzParseCPULine(f *testing.F) {
	f.Add("cpu  100 0 100 700 100 0 0 0 0 0\n")
	f.Add("cpu 1 1 1 1")
	f.Add("intr 1 2 3")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCPULine(s)
		if err != nil {
			return
		}
		if b := c.busyShare(); b < 0 || b > 1 || strings.Contains(fmt.Sprint(b), "NaN") {
			t.Errorf("busy share %v from %q", b, s)
		}
	})
}
