package watch

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/stampede-live/stampede/loadgen"
)

// DefaultDuration is how long one watch() call plays when the script gives no duration.
const DefaultDuration = loadgen.DefaultRunDuration

// Options is what a script passed to watch(), checked.
type Options struct {
	// Config is the session; the caller adds what comes from the VU (Dial, TLS,
	// Observe, ID).
	Config loadgen.WatchConfig
	// Tags are extra tags on this session's samples.
	Tags map[string]string
}

// Parse reads watch()'s argument: a JS object, as sobek exports it (numbers are
// int64 or float64, arrays []any, objects map[string]any). Durations are strings in
// Go's or k6's syntax ("15s", "1m30s", "500ms") or numbers of milliseconds, as in k6's
// own options. Unknown keys are errors, so a misspelt option does not pass silently.
// Errors name the option as the script wrote it.
func Parse(raw map[string]any) (Options, error) {
	o := Options{Config: loadgen.WatchConfig{Duration: DefaultDuration}}
	if raw == nil {
		return o, fmt.Errorf("options: give an object, e.g. {url: 'http://mirror/live/master.m3u8', duration: '60s'}")
	}
	p := parser{prefix: "options."}
	for _, k := range sortedKeys(raw) {
		v := raw[k]
		switch k {
		case "url":
			o.Config.Targets.Master = p.str(k, v)
		case "mirrors":
			o.Config.Targets.Mirrors = p.strs(k, v)
		case "counter":
			o.Config.Targets.Counter = p.str(k, v)
		case "duration":
			o.Config.Duration = p.duration(k, v)
			if p.err == nil && o.Config.Duration <= 0 {
				p.fail(k, "must be positive, got %v", o.Config.Duration)
			}
		case "stopGrace":
			o.Config.StopGrace = p.duration(k, v)
		case "tags":
			o.Tags = p.tags(k, v)
		case "player":
			o.Config.Player = p.player(k, v)
		default:
			p.fail(k, "unknown option (known: counter, duration, mirrors, player, stopGrace, tags, url)")
		}
		if p.err != nil {
			return o, p.err
		}
	}
	if o.Config.Targets.Master == "" && len(o.Config.Targets.Mirrors) == 0 {
		return o, fmt.Errorf("options.url: required (the playlist URL), unless options.mirrors is given")
	}
	return o, nil
}

// parser converts exported JS values, keeping the first error.
type parser struct {
	prefix string // "options." or "options.player."
	err    error
}

func (p *parser) fail(key, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s%s: %s", p.prefix, key, fmt.Sprintf(format, args...))
	}
}

func (p *parser) str(key string, v any) string {
	s, ok := v.(string)
	if !ok {
		p.fail(key, "want a string, got %s", describe(v))
	}
	return s
}

func (p *parser) strs(key string, v any) []string {
	list, ok := v.([]any)
	if !ok {
		if s, ok := v.(string); ok {
			return []string{s} // one mirror given as a plain string
		}
		p.fail(key, "want an array of strings, got %s", describe(v))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			p.fail(fmt.Sprintf("%s[%d]", key, i), "want a string, got %s", describe(e))
			return nil
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) number(key string, v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			p.fail(key, "want a finite number, got %v", n)
			return 0, false
		}
		return n, true
	}
	p.fail(key, "want a number, got %s", describe(v))
	return 0, false
}

func (p *parser) integer(key string, v any) int64 {
	n, ok := p.number(key, v)
	if !ok {
		return 0
	}
	if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
		p.fail(key, "want a whole number, got %v", n)
		return 0
	}
	return int64(n)
}

// duration reads "15s"-style strings or milliseconds.
func (p *parser) duration(key string, v any) time.Duration {
	if s, ok := v.(string); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			p.fail(key, "%q is not a duration like \"15s\" or \"1m30s\"", s)
		}
		return d
	}
	ms, ok := p.number(key, v)
	if !ok {
		p.fail(key, "want a duration like \"15s\" or a number of milliseconds")
		return 0
	}
	if math.Abs(ms) > float64(math.MaxInt64/int64(time.Millisecond)) {
		p.fail(key, "%v ms is out of range", ms)
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}

func (p *parser) tags(key string, v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		p.fail(key, "want an object of name: 'value' pairs, got %s", describe(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for _, name := range sortedKeys(m) {
		switch val := m[name].(type) {
		case string:
			out[name] = val
		case int64, float64, bool:
			out[name] = fmt.Sprint(val)
		default:
			p.fail(key+"."+name, "want a string, got %s", describe(m[name]))
			return nil
		}
	}
	return out
}

// player reads the player settings; absent ones keep loadgen's hls.js defaults.
func (p *parser) player(key string, v any) loadgen.PlayerConfig {
	var pc loadgen.PlayerConfig
	m, ok := v.(map[string]any)
	if !ok {
		p.fail(key, "want an object, got %s", describe(v))
		return pc
	}
	pp := parser{prefix: p.prefix + key + "."}
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch k {
		case "client":
			pc.Client = pp.str(k, v)
		case "mirrorChoice":
			pc.MirrorChoice = pp.str(k, v)
		case "userAgent":
			pc.UserAgent = pp.str(k, v)
		case "liveSyncDurationCount":
			pc.LiveSyncDurationCount = int(pp.integer(k, v))
		case "bandwidthEstimate":
			pc.BandwidthEstimate = pp.integer(k, v)
		case "failoverAfter":
			pc.FailoverAfter = int(pp.integer(k, v))
		case "maxBufferLength":
			pc.MaxBufferLength = pp.duration(k, v)
		case "heartbeatInterval":
			pc.HeartbeatInterval = pp.duration(k, v)
		case "pingTimeout":
			pc.PingTimeout = pp.duration(k, v)
		case "idleConnTimeout":
			pc.IdleConnTimeout = pp.duration(k, v)
		default:
			pp.fail(k, "unknown player option (known: %s)", strings.Join(playerOptions, ", "))
		}
		if pp.err != nil {
			p.err = pp.err
			return pc
		}
	}
	return pc
}

// playerOptions are the keys player accepts, for the error message.
var playerOptions = []string{"bandwidthEstimate", "client", "failoverAfter", "heartbeatInterval",
	"idleConnTimeout", "liveSyncDurationCount", "maxBufferLength", "mirrorChoice", "pingTimeout", "userAgent"}

// describe names a JS value's type for an error message.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case int64, int, float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
