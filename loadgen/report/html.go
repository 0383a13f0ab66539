package report

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// HTMLFile is the report written beside summary.json: one self-contained page (its
// script, styles and data are inline) that opens offline.
const HTMLFile = "report.html"

//go:embed assets/report.html.tmpl assets/report.css assets/report.js
var assets embed.FS

// pageTemplate is parsed once; the script and styles are inlined, never linked, so
// the page needs no network.
var pageTemplate = template.Must(template.New("report.html.tmpl").ParseFS(assets, "assets/report.html.tmpl"))

// RunFiles are what a run's directory holds: the summary, and per tuning (in the
// summary's order) the viewers' series and, for a bench run, the servers' series.
type RunFiles struct {
	Dir     string
	Summary *Summary
	Series  []*Series       // nil where the tuning has none
	Servers []*ServerSeries // nil where the tuning has none (a `stampede viewers` run)
	// Problems are files that exist but could not be read: the page says so and draws
	// what it can, rather than losing the whole report to one damaged file.
	Problems []string
}

// LoadRun reads a run's directory. Only summary.json is required: a tuning
// interrupted before its series were written is drawn from its summary alone. A
// `stampede viewers` run keeps its one series beside summary.json; `stampede bench`
// keeps each tuning's files in DIR/<tuning>/.
func LoadRun(dir string) (*RunFiles, error) {
	sum, err := Read(filepath.Join(dir, SummaryFile))
	if err != nil {
		return nil, err
	}
	rf := &RunFiles{Dir: dir, Summary: sum,
		Series: make([]*Series, len(sum.Tunings)), Servers: make([]*ServerSeries, len(sum.Tunings))}
	for i, t := range sum.Tunings {
		sub := filepath.Join(dir, t.Name)
		if !filepath.IsLocal(t.Name) {
			rf.Problems = append(rf.Problems, fmt.Sprintf("tuning %q: not a directory name; its series were not read", t.Name))
			continue
		}
		seriesPath := filepath.Join(sub, SeriesFile)
		if len(sum.Tunings) == 1 && !exists(seriesPath) {
			seriesPath = filepath.Join(dir, SeriesFile) // the `stampede viewers` layout
		}
		if exists(seriesPath) {
			s, err := ReadSeries(seriesPath)
			if err != nil {
				rf.Problems = append(rf.Problems, err.Error())
			} else {
				rf.Series[i] = s
			}
		}
		if p := filepath.Join(sub, ServersFile); exists(p) {
			s, err := ReadServers(p)
			if err != nil {
				rf.Problems = append(rf.Problems, err.Error())
			} else {
				rf.Servers[i] = s
			}
		}
	}
	return rf, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// WriteHTML renders dir's files into dir/report.html (atomically, like Write) and
// returns the problems the page reports (files it could not read).
func WriteHTML(dir string) ([]string, error) {
	rf, err := LoadRun(dir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := RenderHTML(&buf, BuildPage(rf)); err != nil {
		return rf.Problems, err
	}
	return rf.Problems, WriteFileAtomic(filepath.Join(dir, HTMLFile), buf.Bytes())
}

// RenderHTML writes the page for p.
func RenderHTML(w io.Writer, p *Page) error {
	data, err := p.JSON()
	if err != nil {
		return err
	}
	css, err := assets.ReadFile("assets/report.css")
	if err != nil {
		return err
	}
	js, err := assets.ReadFile("assets/report.js")
	if err != nil {
		return err
	}
	title := "stampede report"
	if p.Run != "" {
		title += " — " + p.Run
	}
	return pageTemplate.Execute(w, struct {
		Title  string
		CSS    template.CSS
		Script template.JS
		Data   template.JS
	}{title, template.CSS(css), template.JS(js), template.JS(data)})
}

// JSON is the page's data section as embedded in report.html. json.Marshal escapes
// <, > and & in strings, so no value can close the <script> element that holds it.
func (p *Page) JSON() ([]byte, error) {
	return json.Marshal(p)
}
