package scenarios

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// files holds the shipped scenarios, so `stampede bench --scenario baseline` works from
// any directory.
//
//go:embed *.yaml
var files embed.FS

// embeddedDir is how embedded files are named in messages (their path in the repository).
const embeddedDir = "scenarios"

// maxFileSize bounds a scenario file; real ones are a few kilobytes.
const maxFileSize = 1 << 20

// Names lists the shipped scenarios, sorted.
func Names() []string {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Source returns the text of a shipped scenario.
func Source(name string) ([]byte, error) {
	b, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no shipped scenario %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// Load reads a scenario by shipped name ("baseline") or by path ("my.yaml",
// "./scenarios/baseline.yaml"). A name with a slash or a .yaml/.yml suffix, or one
// that exists as a file, is a path.
func Load(nameOrPath string) (*Scenario, error) {
	if isPath(nameOrPath) {
		f, err := os.Open(nameOrPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nameOrPath, err)
		}
		return Parse(nameOrPath, b)
	}
	b, err := Source(nameOrPath)
	if err != nil {
		return nil, err
	}
	return Parse(path.Join(embeddedDir, nameOrPath+".yaml"), b)
}

func isPath(s string) bool {
	if strings.ContainsRune(s, os.PathSeparator) || strings.Contains(s, "/") ||
		strings.HasSuffix(s, ".yaml") || strings.HasSuffix(s, ".yml") {
		return true
	}
	_, err := os.Stat(s)
	return err == nil
}

// Parse decodes and validates one scenario file. file names the source in messages.
// Every problem found is reported (an ErrorList of *FieldError), not only the first.
func Parse(file string, data []byte) (*Scenario, error) {
	if len(data) > maxFileSize {
		return nil, &FieldError{File: file, Msg: fmt.Sprintf("file larger than %d bytes", maxFileSize)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{File: file, Msg: "empty file (a scenario needs at least a name)"}
		}
		return nil, yamlSyntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &FieldError{File: file, Line: extra.Line, Msg: "more than one YAML document; a scenario is one document"}
	}
	root := resolve(&doc)
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, &FieldError{File: file, Line: doc.Line, Msg: "want a mapping of fields (name:, viewers:, …) at the top"}
	}

	s := Default()
	s.File = file
	d := newDecoder(file)
	// Tunings are decoded after everything else: each starts from the finished base
	// settings, wherever the tunings key sits in the file.
	var tunings *yaml.Node
	var tuningsLine int
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: root.Line, Column: root.Column}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := resolve(root.Content[i])
		if k != nil && k.Kind == yaml.ScalarNode && k.Value == "tunings" {
			if tunings != nil {
				d.errorf(k.Line, "tunings", "field given twice")
				continue
			}
			tunings, tuningsLine = root.Content[i+1], k.Line
			continue
		}
		rest.Content = append(rest.Content, root.Content[i], root.Content[i+1])
	}
	d.decode(rest, "", reflect.ValueOf(s).Elem())
	s.applyArrivalDefaults()
	if tunings != nil {
		d.decodeTunings(tunings, tuningsLine, s)
	}
	if len(s.Tunings) == 0 && tunings == nil {
		s.Tunings = []Tuning{{Name: DefaultTuningName, Settings: s.Settings.clone()}}
	}
	s.lines = d.lines
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
		return nil, d.errs
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func (d *decoder) decodeTunings(n *yaml.Node, keyLine int, s *Scenario) {
	n = resolve(n)
	d.lines["tunings"] = keyLine
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, "tunings", "want a list of tunings (- name: …), got %s", kindName(n))
		return
	}
	s.Tunings = make([]Tuning, len(n.Content))
	for i, c := range n.Content {
		t := &s.Tunings[i]
		t.Settings = s.Settings.clone()
		// The kind of arrival decides its default window: reset the window if the tuning
		// changes the kind without giving one.
		kindBefore := t.Viewers.Arrivals.Kind
		d.decode(c, "tunings["+strconv.Itoa(i)+"]", reflect.ValueOf(t).Elem())
		if t.Viewers.Arrivals.Kind != kindBefore && !d.has("tunings["+strconv.Itoa(i)+"].viewers.arrivals.over") {
			t.Viewers.Arrivals.Over = 0
		}
		t.applyArrivalDefaults()
	}
}

func (d *decoder) has(path string) bool {
	_, ok := d.lines[path]
	return ok
}

// yamlSyntaxError turns yaml.v3's "yaml: line 3: …" into file:3: ….
func yamlSyntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, perr := strconv.Atoi(num); perr == nil {
				line, msg = n, tail
			}
		}
	}
	return &FieldError{File: file, Line: line, Msg: "not valid YAML: " + msg}
}

// Marshal renders the resolved scenario as YAML (what `scenario check -v` prints).
func (s *Scenario) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func itoa(i int) string { return strconv.Itoa(i) }

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
