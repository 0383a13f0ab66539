package scenarios

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The value types below are written in a scenario as one scalar each ("2s", "500k",
// "256MiB", "50/s", an enum word) and print back the same way, so `scenario check -v`
// shows the resolved file in the syntax it was written in.

// Duration is a time.Duration written as Go writes durations ("500ms", "2s", "1m30s").
// A bare number other than 0 is rejected: "60" could mean seconds or milliseconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) decodeScalar(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML prints the duration as text.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Errorf("bad duration %q: give a unit, e.g. %ss or %sms", s, s, s)
		}
		return 0, fmt.Errorf("bad duration %q (want e.g. 500ms, 2s, 1m30s)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("bad duration %q: must not be negative", s)
	}
	return v, nil
}

// Bitrate is in bits per second, written "500k", "1.5M", "800000".
type Bitrate int64

func (b Bitrate) String() string {
	switch {
	case b != 0 && b%1_000_000_000 == 0:
		return strconv.FormatInt(int64(b)/1_000_000_000, 10) + "G"
	case b != 0 && b%1_000_000 == 0:
		return strconv.FormatInt(int64(b)/1_000_000, 10) + "M"
	case b != 0 && b%1_000 == 0:
		return strconv.FormatInt(int64(b)/1_000, 10) + "k"
	}
	return strconv.FormatInt(int64(b), 10)
}

func (b *Bitrate) decodeScalar(s string) error {
	v, err := parseScaled(s, map[string]float64{"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9})
	if err != nil {
		return fmt.Errorf("bad bitrate %q (want bits per second, e.g. 500k, 1.5M)", s)
	}
	*b = Bitrate(v)
	return nil
}

// MarshalYAML prints the bitrate as text.
func (b Bitrate) MarshalYAML() (any, error) { return b.String(), nil }

// ByteSize is a size in bytes, written "256MiB", "1GiB", "64KB", "1048576".
type ByteSize int64

var byteUnits = map[string]float64{
	"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
}

func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

func (b *ByteSize) decodeScalar(s string) error {
	v, err := parseScaled(s, byteUnits)
	if err != nil {
		return fmt.Errorf("bad size %q (want e.g. 256MiB, 1GiB, 64KB)", s)
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML prints the size as text.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// parseScaled parses a non-negative number followed by one of units' suffixes.
func parseScaled(s string, units map[string]float64) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	mult, ok := units[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("bad value %q", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return int64(math.Round(f * mult)), nil
}

// Rate is arrivals per second, written "50/s", "3000/min", "2/ms" or a bare number
// (per second).
type Rate float64

func (r Rate) String() string { return strconv.FormatFloat(float64(r), 'g', -1, 64) + "/s" }

func (r *Rate) decodeScalar(s string) error {
	num, per, _ := strings.Cut(strings.TrimSpace(s), "/")
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Errorf("bad rate %q (want e.g. 50/s, 3000/min)", s)
	}
	switch strings.TrimSpace(per) {
	case "", "s":
	case "min", "m":
		f /= 60
	case "h":
		f /= 3600
	case "ms":
		f *= 1000
	default:
		return fmt.Errorf("bad rate %q: unit %q (want /s, /min or /h)", s, per)
	}
	*r = Rate(f)
	return nil
}

// MarshalYAML prints the rate as text.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }

// setEnum stores s into *dst when it is one of allowed.
func setEnum[T ~string](dst *T, s string, allowed []T) error {
	for _, a := range allowed {
		if string(a) == s {
			*dst = a
			return nil
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return fmt.Errorf("unknown value %q (want %s)", s, strings.Join(names, ", "))
}

// ArrivalKind is how viewers arrive.
type ArrivalKind string

// Arrival kinds.
const (
	// ArrivalRamp spreads viewers.count arrivals evenly over arrivals.over.
	ArrivalRamp ArrivalKind = "ramp"
	// ArrivalFlash brings every viewer at arrivals.at, within arrivals.over (default 1s):
	// the stream-start thundering herd.
	ArrivalFlash ArrivalKind = "flash"
	// ArrivalPoisson draws arrivals at arrivals.rate per second (exponential gaps)
	// until viewers.count have arrived.
	ArrivalPoisson ArrivalKind = "poisson"
)

// ArrivalKinds lists the valid ArrivalKind values.
var ArrivalKinds = []ArrivalKind{ArrivalRamp, ArrivalFlash, ArrivalPoisson}

func (k *ArrivalKind) decodeScalar(s string) error { return setEnum(k, s, ArrivalKinds) }

// SessionKind is how long a viewer stays.
type SessionKind string

// Session kinds.
const (
	// SessionWhole keeps every viewer until the end of the run (no churn).
	SessionWhole SessionKind = "whole"
	// SessionFixed ends every session after session.length.
	SessionFixed SessionKind = "fixed"
	// SessionExponential draws session lengths with mean session.mean (memoryless churn).
	SessionExponential SessionKind = "exponential"
	// SessionUniform draws session lengths uniformly in [session.min, session.max].
	SessionUniform SessionKind = "uniform"
)

// SessionKinds lists the valid SessionKind values.
var SessionKinds = []SessionKind{SessionWhole, SessionFixed, SessionExponential, SessionUniform}

func (k *SessionKind) decodeScalar(s string) error { return setEnum(k, s, SessionKinds) }

// MirrorKind picks the mirror implementation.
type MirrorKind string

// Mirror kinds.
const (
	MirrorStampede MirrorKind = "stampede" // `stampede mirror`, the reference cache
	MirrorNginx    MirrorKind = "nginx"    // real nginx proxy_cache (testenv/nginx)
)

// MirrorKinds lists the valid MirrorKind values.
var MirrorKinds = []MirrorKind{MirrorStampede, MirrorNginx}

func (k *MirrorKind) decodeScalar(s string) error { return setEnum(k, s, MirrorKinds) }

// CounterStore picks the viewer counter's store (servers/counter).
type CounterStore string

// Counter stores. `unsafe` is the story's bug: a plain map without a lock.
const (
	StoreUnsafe  CounterStore = "unsafe"
	StoreMutex   CounterStore = "mutex"
	StoreRWMutex CounterStore = "rwmutex"
	StoreSharded CounterStore = "sharded"
	StoreSyncMap CounterStore = "syncmap"
)

// CounterStores lists the valid CounterStore values.
var CounterStores = []CounterStore{StoreUnsafe, StoreMutex, StoreRWMutex, StoreSharded, StoreSyncMap}

func (k *CounterStore) decodeScalar(s string) error { return setEnum(k, s, CounterStores) }

// RestartPolicy says what the supervisor does when a process exits on its own.
type RestartPolicy string

// Restart policies (systemd's Restart=no / Restart=on-failure).
const (
	RestartNever   RestartPolicy = "never"
	RestartOnCrash RestartPolicy = "on-crash"
)

// RestartPolicies lists the valid RestartPolicy values.
var RestartPolicies = []RestartPolicy{RestartNever, RestartOnCrash}

func (k *RestartPolicy) decodeScalar(s string) error { return setEnum(k, s, RestartPolicies) }

// MirrorChoice is how a viewer picks its mirror at join.
type MirrorChoice string

// Mirror choices.
const (
	// ChooseLowestRTT measures each mirror's round trip and picks the lowest (DESIGN.md).
	ChooseLowestRTT MirrorChoice = "lowest-rtt"
	// ChooseRandom picks uniformly at random, ignoring distance.
	ChooseRandom MirrorChoice = "random"
)

// MirrorChoices lists the valid MirrorChoice values.
var MirrorChoices = []MirrorChoice{ChooseLowestRTT, ChooseRandom}

func (k *MirrorChoice) decodeScalar(s string) error { return setEnum(k, s, MirrorChoices) }

// FaultAction is what a fault does to its target.
type FaultAction string

// Fault actions.
const (
	FaultKill    FaultAction = "kill"    // SIGKILL the process (no restart unless a later fault says so)
	FaultStop    FaultAction = "stop"    // SIGSTOP: the process hangs, connections stay open; `until` sends SIGCONT
	FaultCont    FaultAction = "cont"    // SIGCONT a stopped process
	FaultRestart FaultAction = "restart" // stop gracefully (if running) and start again on the same address
	FaultDelay   FaultAction = "delay"   // add `delay` of round trip between a mirror and its upstream until `until`
)

// FaultActions lists the valid FaultAction values.
var FaultActions = []FaultAction{FaultKill, FaultStop, FaultCont, FaultRestart, FaultDelay}

func (k *FaultAction) decodeScalar(s string) error { return setEnum(k, s, FaultActions) }
