package scenarios

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file decodes a yaml.Node tree into the scenario types by reflection, strictly:
// an unknown field, a duplicate key, a value of the wrong type or a bad value is an
// error naming the field path and the line. yaml.v3's own Decode only knows "line N:
// field x not found in type T"; scenario authors need the path and the allowed values.

// FieldError is one problem in a scenario file, located by field path and line.
type FieldError struct {
	File string // file name as given to Parse; empty for a scenario built in code
	Line int    // 1-based; 0 when the field is not in the file (a default)
	Path string // e.g. viewers.arrivals.kind, tunings[1].counter.store
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
		if e.Line > 0 {
			b.WriteString(strconv.Itoa(e.Line))
			b.WriteString(":")
		}
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in one file, in file order.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap lets errors.As find a *FieldError inside the list.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// maxErrors bounds how many problems one file reports, so a fuzzed or binary file does
// not produce megabytes of errors.
const maxErrors = 50

// scalarDecoder is implemented by the scenario's value types (Duration, Bitrate, the
// enums, Threshold) that are written as one YAML scalar.
type scalarDecoder interface {
	decodeScalar(s string) error
}

// maxNodes bounds the nodes decoded, aliases followed included, so a file of aliases
// of aliases cannot make decoding take quadratic time.
const maxNodes = 200_000

// decoder walks nodes and records where each field path was found.
type decoder struct {
	file  string
	lines map[string]int // field path → line of its value
	errs  ErrorList
	nodes int // decoded so far, for maxNodes
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, lines: map[string]int{}}
}

func (d *decoder) errorf(line int, path, format string, a ...any) {
	if len(d.errs) >= maxErrors {
		return
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, a...)})
}

// lineOf returns the line recorded for path or, when the field was not written (it
// holds a default), the line of its nearest written ancestor.
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// resolve follows aliases (bounded, so a cycle cannot loop) and unwraps documents.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < 16; i++ {
		switch {
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
}

var scalarDecoderType = reflect.TypeFor[scalarDecoder]()

// decode stores node n into v (addressable), which may already hold defaults: fields
// the node does not mention keep their value, so "defaults, then file" is one pass.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	n = resolve(n)
	if n == nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		d.errorf(n.Line, path, "alias nests too deeply")
		return
	}
	if d.nodes++; d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errorf(n.Line, path, "more than %d values (aliases expanded): not a scenario", maxNodes)
		}
		return
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	if v.CanAddr() && v.Addr().Type().Implements(scalarDecoderType) {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.errorf(n.Line, path, "want a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(scalarDecoder).decodeScalar(n.Value); err != nil {
			d.errorf(n.Line, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, path, v)
	case reflect.Map:
		d.decodeMap(n, path, v)
	case reflect.Slice:
		d.decodeSlice(n, path, v)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, path, v.Elem())
	case reflect.String:
		if s, ok := d.scalar(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		switch s {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.errorf(n.Line, path, "want true or false, got %q", s)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil || v.OverflowInt(i) {
			d.errorf(n.Line, path, "want a whole number, got %q", s)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n.Line, path, "want a number, got %q", s)
			return
		}
		v.SetFloat(f)
	default:
		panic("scenarios: no decoder for " + v.Type().String())
	}
}

// scalar returns a scalar node's text, reporting a mapping, list or null as an error.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n.Line, path, "want a single value, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// structFields maps the YAML names of t's fields (following ",inline") to field index
// paths.
func structFields(t reflect.Type) (map[string][]int, []string) {
	idx := map[string][]int{}
	var names []string
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			at := append(append([]int(nil), prefix...), i)
			if opts == "inline" {
				walk(f.Type, at)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			idx[name] = at
			names = append(names, name)
		}
	}
	walk(t, nil)
	sort.Strings(names)
	return idx, names
}

func (d *decoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "want a mapping of fields, got %s", kindName(n))
		return
	}
	fields, names := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "field names must be plain words, got %s", kindName(k))
			continue
		}
		p := joinPath(path, k.Value)
		if k.Value == "<<" {
			d.errorf(k.Line, path, "merge keys (<<) are not supported; write the fields out")
			continue
		}
		at, ok := fields[k.Value]
		if !ok {
			d.errorf(k.Line, p, "unknown field%s (want one of %s)", suggest(k.Value, names), strings.Join(names, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k.Line, p, "field given twice")
			continue
		}
		seen[k.Value] = true
		d.lines[p] = k.Line // a field's line is its key's, also for a mapping or list value
		d.decode(val, p, v.FieldByIndex(at))
	}
}

func (d *decoder) decodeMap(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "want a mapping, got %s", kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("scenarios: map keys must be strings")
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "keys must be plain words, got %s", kindName(k))
			continue
		}
		p := joinPath(path, k.Value)
		if seen[k.Value] {
			d.errorf(k.Line, p, "key given twice")
			continue
		}
		seen[k.Value] = true
		d.lines[p] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(k.Value)); old.IsValid() {
			elem.Set(old) // a tuning's flag map merges onto the base one
		}
		d.decode(n.Content[i+1], p, elem)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "want a list, got %s", kindName(n))
		return
	}
	// A list in a tuning replaces the base list; it never appends to it.
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.decode(c, fmt.Sprintf("%s[%d]", path, i), out.Index(i))
	}
	v.Set(out)
}

// suggest returns ` (did you mean "x"?)` for the closest known name, or "".
func suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dd := editDistance(got, k); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best == "" {
		return fmt.Sprintf(" %q", got)
	}
	return fmt.Sprintf(" %q (did you mean %q?)", got, best)
}

// editDistance is the Levenshtein distance, for "did you mean" hints on short names.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
