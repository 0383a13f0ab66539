package scenarios

import (
	"fmt"
	"time"
)

// DefaultScenario is what `stampede bench` and `make bench` run without --scenario.
const DefaultScenario = "baseline"

// SetDuration overrides how long each tuning runs (`bench --duration`). Arrivals that
// would end after the new end are squeezed into its first half, and the returned notes
// say so; faults after the end are left for Validate to report.
func (s *Scenario) SetDuration(d time.Duration) []string {
	s.Duration = Duration(d)
	var notes []string
	fit := func(st *Settings) string {
		a := &st.Viewers.Arrivals
		if a.Kind == ArrivalPoisson || a.At.D() >= d || a.At.D()+a.Over.D() <= d {
			return ""
		}
		over := (d - a.At.D()) / 2
		note := fmt.Sprintf("arrivals spread over %s instead of %s to fit the %s run", over, a.Over, d)
		a.Over = Duration(over)
		return note
	}
	fit(&s.Settings) // the base is never run itself: its tunings say what changed
	for i := range s.Tunings {
		if n := fit(&s.Tunings[i].Settings); n != "" {
			notes = append(notes, "tuning "+s.Tunings[i].Name+": "+n)
		}
	}
	return notes
}
