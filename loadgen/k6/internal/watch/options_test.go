package watch

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stampede-live/stampede/loadgen"
)

const master = "http://127.0.0.1:8081/live/master.m3u8"

func TestParseReadsWhatAScriptWrites(t *testing.T) {
	t.Parallel()
	// Values as sobek exports them: whole numbers int64, others float64, arrays []any.
	o, err := Parse(map[string]any{
		"url":       master,
		"mirrors":   []any{"http://127.0.0.1:8081", "http://127.0.0.1:8082"},
		"counter":   "http://127.0.0.1:8090",
		"duration":  "1m30s",
		"stopGrace": int64(1500),
		"tags":      map[string]any{"event": "final", "region": int64(3)},
		"player": map[string]any{
			"client":                "net/http",
			"mirrorChoice":          "random",
			"userAgent":             "hls.js",
			"liveSyncDurationCount": int64(4),
			"bandwidthEstimate":     float64(1e6),
			"failoverAfter":         int64(-1),
			"maxBufferLength":       "20s",
			"heartbeatInterval":     float64(2500),
			"pingTimeout":           "750ms",
			"idleConnTimeout":       int64(60000),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		Config: loadgen.WatchConfig{
			Targets: loadgen.Targets{Master: master,
				Mirrors: []string{"http://127.0.0.1:8081", "http://127.0.0.1:8082"}, Counter: "http://127.0.0.1:8090"},
			Duration:  90 * time.Second,
			StopGrace: 1500 * time.Millisecond,
			Player: loadgen.PlayerConfig{
				Client: loadgen.ClientNetHTTP, MirrorChoice: loadgen.ChooseRandom, UserAgent: "hls.js",
				LiveSyncDurationCount: 4, BandwidthEstimate: 1_000_000, FailoverAfter: -1,
				MaxBufferLength: 20 * time.Second, HeartbeatInterval: 2500 * time.Millisecond,
				PingTimeout: 750 * time.Millisecond, IdleConnTimeout: time.Minute,
			},
		},
		Tags: map[string]string{"event": "final", "region": "3"},
	}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", o, want)
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	o, err := Parse(map[string]any{"url": master})
	if err != nil {
		t.Fatal(err)
	}
	if o.Config.Duration != DefaultDuration || o.Config.Player != (loadgen.PlayerConfig{}) || o.Tags != nil {
		t.Fatalf("parsed %+v: want the default duration and loadgen's player defaults", o)
	}
	// A single mirror may be given as a string.
	o, err = Parse(map[string]any{"url": master, "mirrors": "http://127.0.0.1:8082"})
	if err != nil || !reflect.DeepEqual(o.Config.Targets.Mirrors, []string{"http://127.0.0.1:8082"}) {
		t.Fatalf("mirrors %v, err %v", o.Config.Targets.Mirrors, err)
	}
}

func TestParseErrorsNameTheOption(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw  map[string]any
		want string
	}{
		// no argument at all
		{nil, "options: give an object"},
		// neither url nor mirrors
		{map[string]any{"duration": "10s"}, "options.url: required"},
		// a misspelt option
		{map[string]any{"url": master, "durration": "10s"}, "options.durration: unknown option"},
		// a misspelt player option
		{map[string]any{"url": master, "player": map[string]any{"maxBuffer": "10s"}}, "options.player.maxBuffer: unknown player option"},
		// a URL that is not a string
		{map[string]any{"url": int64(3)}, "options.url: want a string, got a number"},
		// a mirror list with a number in it
		{map[string]any{"url": master, "mirrors": []any{"http://a", int64(1)}}, "options.mirrors[1]: want a string"},
		// a duration in no known syntax
		{map[string]any{"url": master, "duration": "ten seconds"}, `options.duration: "ten seconds" is not a duration`},
		// a zero duration (the session would never end on its own)
		{map[string]any{"url": master, "duration": int64(0)}, "options.duration: must be positive"},
		// a duration of the wrong type
		{map[string]any{"url": master, "duration": true}, "options.duration: want a number, got a boolean"},
		// a fractional count
		{map[string]any{"url": master, "player": map[string]any{"liveSyncDurationCount": 2.5}}, "options.player.liveSyncDurationCount: want a whole number"},
		// player not an object
		{map[string]any{"url": master, "player": "fast"}, "options.player: want an object, got a string"},
		// a tag value that is an object
		{map[string]any{"url": master, "tags": map[string]any{"a": map[string]any{}}}, "options.tags.a: want a string, got an object"},
		// an absurd number of milliseconds
		{map[string]any{"url": master, "stopGrace": 1e300}, "options.stopGrace: 1e+300 ms is out of range"},
	} {
		_, err := Parse(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%v): error %v, want one containing %q", tc.raw, err, tc.want)
		}
	}
}

// FuzzParse: whatever a script passes (here: any JSON object), Parse returns options or
// an error naming an option, and never panics.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"url": "http://127.0.0.1:8081/live/master.m3u8", "duration": "15s"}`,
		`{"url": "http://a/live/master.m3u8", "mirrors": ["http://a", "http://b"], "counter": "http://c", "player": {"client": "net/http", "maxBufferLength": 30000}}`,
		`{"mirrors": "http://a", "tags": {"x": 1, "y": true}, "stopGrace": -5}`,
		`{"url": 1, "player": {"liveSyncDurationCount": 1e30}}`,
		`{"duration": 9.3e18}`,
		`{}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var raw map[string]any
		if json.Unmarshal([]byte(s), &raw) != nil {
			return
		}
		if _, err := Parse(raw); err != nil && !strings.HasPrefix(err.Error(), "options") {
			t.Fatalf("error %q does not name an option", err)
		}
	})
}
