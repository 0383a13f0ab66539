package report

import (
	"os"
	"path/filepath"
)

// SeriesFile is the per-second time series written beside summary.json.
const SeriesFile = "series.json"

// Series is one tuning's run, second by second (or coarser, see StepS), for the HTML
// report's charts. Its size grows with the run's length, never with its request count.
type Series struct {
	Tuning string `json:"tuning,omitempty"`
	// StepS is the width of one point in seconds: 1, doubled each time a long run
	// reaches the recorder's point limit (adjacent points are then merged).
	StepS  float64       `json:"step_s"`
	Points []SeriesPoint `json:"points"`
}

// SeriesPoint is one step of a run. Counts are events in the step; levels (Active,
// Stalled, Truth) are sampled at its end; quantiles are of the step's requests.
type SeriesPoint struct {
	T        float64 `json:"t"`       // seconds since the run started, at the step's end
	Active   int     `json:"active"`  // viewers in a session
	Stalled  int     `json:"stalled"` // viewers stalled now
	Requests struct {
		Playlist  int64 `json:"playlist"`
		Segment   int64 `json:"segment"`
		Heartbeat int64 `json:"heartbeat"`
		Ping      int64 `json:"ping,omitempty"`
	} `json:"requests"`
	BytesIn       int64            `json:"bytes_in"`
	PlaylistMs    PointQuantiles   `json:"playlist_ms"`
	SegmentMs     PointQuantiles   `json:"segment_ms"`
	SegmentTTFBMs PointQuantiles   `json:"segment_ttfb_ms"`
	Stalls        int64            `json:"stalls"`        // stalls begun in the step
	StallSeconds  float64          `json:"stall_seconds"` // stall time ended in the step
	Errors        map[string]int64 `json:"errors,omitempty"`
	// CounterAnswer is the counter's latest answer in the step (-1: none came), Truth
	// the number of viewers really in a session at the step's end.
	CounterAnswer int64   `json:"counter_answer"`
	Truth         int     `json:"truth"`
	LagP99Ms      float64 `json:"lag_p99_ms"` // generator timer lag
	LagMaxMs      float64 `json:"lag_max_ms"`
}

// PointQuantiles is the short quantile set a chart needs.
type PointQuantiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// WriteSeries writes s as dir/series.json, creating dir (with WriteFileAtomic, like
// Write).
func WriteSeries(dir string, s *Series) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return WriteJSONFile(filepath.Join(dir, SeriesFile), s, "")
}

// ReadSeries loads a series file.
func ReadSeries(path string) (*Series, error) {
	return readJSONFile[Series](path, "series")
}
