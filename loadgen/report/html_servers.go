package report

import (
	"encoding/json"
	"fmt"
	"os"
)

// serverSeries is the part of servers.json (written by the bench runner, package
// scenarios, which this package cannot import) that the page draws. Field names are
// that file's; a test decodes the runner's own type through this one so they cannot
// drift apart.
type serverSeries struct {
	Tuning    string          `json:"tuning"`
	StepS     float64         `json:"step_s"`
	Processes []serverProcess `json:"processes"`
	Points    []serverPoint   `json:"points"`
}

// serverProcess names one server of the topology, in report order (origin, mirrors,
// counter).
type serverProcess struct {
	Name    string `json:"name"`
	Role    string `json:"role"` // origin, mirror, counter
	Kind    string `json:"kind,omitempty"`
	Crashes int    `json:"crashes"`
}

// serverPoint is every server at one scrape; counts are within the step.
type serverPoint struct {
	T     float64                 `json:"t"`
	Procs map[string]serverSample `json:"procs"`
}

type serverSample struct {
	Up       bool     `json:"up"`
	OpenFDs  int64    `json:"open_fds"`
	Conns    int64    `json:"conns"`
	Requests int64    `json:"requests"`
	Upstream int64    `json:"upstream_requests"`
	HitRatio *float64 `json:"hit_ratio"`
	Viewers  *int64   `json:"viewers"`
}

// Server roles, the values of serverProcess.Role.
const (
	roleOrigin  = "origin"
	roleMirror  = "mirror"
	roleCounter = "counter"
)

func readServers(path string) (*serverSeries, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s serverSeries
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: not a servers series: %w", path, err)
	}
	return &s, nil
}

// processes returns the names of the processes with the given role, in order.
func (s *serverSeries) processes(role string) []string {
	var out []string
	for _, p := range s.Processes {
		if p.Role == role {
			out = append(out, p.Name)
		}
	}
	return out
}
