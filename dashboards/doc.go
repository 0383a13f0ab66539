// Package dashboards holds stampede's Grafana dashboards and the files that provision
// them. The JSON files are the source (Grafana's classic dashboard model, datasource
// chosen by the DS_PROMETHEUS variable, no __inputs): edit them here, or in Grafana and
// export them back. The package's tests prove them: structure (unique uids and panel
// ids, every variable defined, every query grouped by run and tuning) and, against
// Debian's real Prometheus scraping two real bench runs, that every panel query
// parses and returns data.
package dashboards

import "embed"

// FS holds the dashboards' JSON files, for programs that install them.
//
//go:embed *.json
var FS embed.FS

// Files are the dashboards, one JSON file each.
var Files = []string{"tuning-comparison.json", "run-detail.json", "loadgen-health.json"}
