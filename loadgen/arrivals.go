package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Arrival kinds (Arrivals.Kind).
const (
	// ArrivalRamp starts Count viewers evenly over Over (all at once when Over is 0).
	ArrivalRamp = "ramp"
	// ArrivalFlash starts Count viewers at uniformly random moments within Over
	// (DefaultFlashWindow when 0): a crowd arriving as the stream starts.
	ArrivalFlash = "flash"
	// ArrivalPoisson starts viewers at exponentially distributed gaps averaging 1/Rate,
	// until the run ends or Count viewers (when Count > 0) have arrived.
	ArrivalPoisson = "poisson"
)

// DefaultFlashWindow is how long a flash crowd takes to arrive when Arrivals.Over is 0.
const DefaultFlashWindow = 2 * time.Second

// Session length distributions (SessionLength.Dist).
const (
	// SessionWhole: viewers stay until the run ends (no churn). The default.
	SessionWhole = "whole"
	// SessionFixed: every session lasts Mean.
	SessionFixed = "fixed"
	// SessionExponential: sessions last Min plus an exponential time with mean Mean-Min
	// (memoryless departures: the same share of viewers leaves every minute).
	SessionExponential = "exponential"
	// SessionUniform: sessions last uniformly between Min and Max.
	SessionUniform = "uniform"
)

// Arrivals is the open-model schedule of viewers joining: it depends on the clock only,
// never on how the servers answer (a slow server does not slow arrivals).
type Arrivals struct {
	Kind  string        // ArrivalRamp (default), ArrivalFlash, ArrivalPoisson
	Count int           // viewers to start; for poisson an optional cap (0: none)
	Over  time.Duration // ramp: the ramp's length; flash: the window
	Rate  float64       // poisson: arrivals per second
	// At delays the first arrival: the schedule starts this long after the run does.
	At time.Duration
	// Session is how long each viewer stays (churn).
	Session SessionLength
	// Seed makes flash, poisson and session draws repeatable (0: a fixed default seed,
	// so two runs of the same scenario draw the same crowd).
	Seed uint64
}

// SessionLength is the distribution of session lengths.
type SessionLength struct {
	Dist     string // SessionWhole (default), SessionFixed, SessionExponential, SessionUniform
	Mean     time.Duration
	Min, Max time.Duration
}

func (a Arrivals) withDefaults() (Arrivals, error) {
	if a.Kind == "" {
		a.Kind = ArrivalRamp
	}
	if a.Session.Dist == "" {
		a.Session.Dist = SessionWhole
	}
	if a.Kind == ArrivalFlash && a.Over == 0 {
		a.Over = DefaultFlashWindow
	}
	switch a.Kind {
	case ArrivalRamp, ArrivalFlash:
		if a.Count <= 0 {
			return a, fmt.Errorf("Arrivals.Count: %d viewers; %s needs at least one", a.Count, a.Kind)
		}
	case ArrivalPoisson:
		if a.Rate <= 0 || math.IsInf(a.Rate, 0) || math.IsNaN(a.Rate) {
			return a, fmt.Errorf("Arrivals.Rate: %v arrivals/s; poisson needs a positive rate", a.Rate)
		}
		if a.Count < 0 {
			return a, fmt.Errorf("Arrivals.Count: %d is negative", a.Count)
		}
	default:
		return a, fmt.Errorf("Arrivals.Kind: %q is not %s, %s or %s", a.Kind, ArrivalRamp, ArrivalFlash, ArrivalPoisson)
	}
	if a.Over < 0 {
		return a, fmt.Errorf("Arrivals.Over: %v is negative", a.Over)
	}
	if a.At < 0 {
		return a, fmt.Errorf("Arrivals.At: %v is negative", a.At)
	}
	s := a.Session
	switch s.Dist {
	case SessionWhole:
	case SessionFixed:
		if s.Mean <= 0 {
			return a, fmt.Errorf("Arrivals.Session.Mean: fixed sessions need a positive length, got %v", s.Mean)
		}
	case SessionExponential:
		if s.Mean <= 0 || s.Min < 0 || s.Min >= s.Mean {
			return a, fmt.Errorf("Arrivals.Session: exponential needs 0 <= Min < Mean, got Min %v Mean %v", s.Min, s.Mean)
		}
	case SessionUniform:
		if s.Min <= 0 || s.Max < s.Min {
			return a, fmt.Errorf("Arrivals.Session: uniform needs 0 < Min <= Max, got %v..%v", s.Min, s.Max)
		}
	default:
		return a, fmt.Errorf("Arrivals.Session.Dist: %q is not %s, %s, %s or %s", s.Dist, SessionWhole, SessionFixed, SessionExponential, SessionUniform)
	}
	return a, nil
}

// Target is the number of viewers the schedule aims to have watching at once: Count for
// ramp and flash; for poisson with churn, Little's law (rate × mean session), capped by
// Count; for poisson without churn, Count (0 when uncapped: it grows all run).
func (a Arrivals) Target() int {
	if a.Kind != ArrivalPoisson {
		return a.Count
	}
	mean := a.Session.mean()
	if mean <= 0 {
		return a.Count
	}
	n := int(math.Round(a.Rate * mean.Seconds()))
	if a.Count > 0 && n > a.Count {
		n = a.Count
	}
	return n
}

func (s SessionLength) mean() time.Duration {
	switch s.Dist {
	case SessionFixed, SessionExponential:
		return s.Mean
	case SessionUniform:
		return (s.Min + s.Max) / 2
	}
	return 0
}

// schedule yields arrival offsets from the run's start, in order.
type schedule struct {
	a   Arrivals
	rng *rand.Rand
	n   int
	at  time.Duration
	// flash arrivals are drawn up front and sorted; Count is bounded by the caller.
	flash []time.Duration
}

func newSchedule(a Arrivals) *schedule {
	seed := a.Seed
	if seed == 0 {
		seed = 0x5eed
	}
	s := &schedule{a: a, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if a.Kind == ArrivalFlash {
		s.flash = make([]time.Duration, a.Count)
		for i := range s.flash {
			s.flash[i] = time.Duration(s.rng.Int64N(int64(a.Over) + 1))
		}
		slices.Sort(s.flash)
	}
	return s
}

// next returns the next arrival's offset, or false when the schedule is done.
func (s *schedule) next() (time.Duration, bool) {
	a := s.a
	if a.Count > 0 && s.n >= a.Count {
		return 0, false
	}
	i := s.n
	s.n++
	switch a.Kind {
	case ArrivalFlash:
		return a.At + s.flash[i], true
	case ArrivalPoisson:
		gap := s.rng.ExpFloat64() / a.Rate
		s.at += time.Duration(gap * float64(time.Second))
		return a.At + s.at, true
	}
	if a.Count <= 1 || a.Over == 0 {
		return a.At, true
	}
	return a.At + time.Duration(int64(a.Over)*int64(i)/int64(a.Count)), true
}

// sessionLength draws one session's length; 0 means until the run ends.
func (s *schedule) sessionLength() time.Duration {
	l := s.a.Session
	switch l.Dist {
	case SessionFixed:
		return l.Mean
	case SessionExponential:
		return l.Min + time.Duration(s.rng.ExpFloat64()*float64(l.Mean-l.Min))
	case SessionUniform:
		return l.Min + time.Duration(s.rng.Int64N(int64(l.Max-l.Min)+1))
	}
	return 0
}
