package scenarios

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestSchemaFileIsCurrent keeps scenario.schema.json equal to what the Go types give;
// go test ./scenarios -run Schema -update rewrites it.
func TestSchemaFileIsCurrent(t *testing.T) {
	got, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(SchemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(SchemaFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run go test ./scenarios -run Schema -update", SchemaFile)
	}
}

// TestSchemaAgreesWithParser checks the schema accepts every shipped scenario and
// rejects what the parser rejects for shape (unknown fields, enum values, types).
func TestSchemaAgreesWithParser(t *testing.T) {
	b, _ := JSONSchema()
	var sch map[string]any
	if err := json.Unmarshal(b, &sch); err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		src, _ := Source(n)
		var doc any
		if err := yaml.Unmarshal(src, &doc); err != nil {
			t.Fatal(err)
		}
		if err := validateSchema(sch, doc, n); err != nil {
			t.Errorf("schema rejects shipped %s: %v", n, err)
		}
	}
	for _, bad := range []string{
		"name: x\nviewrs: {}\n",                               // unknown field
		"name: x\nviewers: {arrivals: {kind: rmap}}\n",        // enum
		"name: x\nviewers: {count: many}\n",                   // type
		"name: x\nduration: 60\n",                             // duration without unit
		"name: x\nthresholds: [segment_p99]\n",                // threshold without comparison
		"name: x\ntunings: [{name: a, counter: {stor: x}}]\n", // unknown field in a tuning
		"duration: 10s\n",                                     // no name
	} {
		var doc any
		yaml.Unmarshal([]byte(bad), &doc)
		if err := validateSchema(sch, doc, "bad"); err == nil {
			t.Errorf("schema accepts %q", bad)
		}
		if _, err := Parse("bad.yaml", []byte(bad)); err == nil {
			t.Errorf("parser accepts %q", bad)
		}
	}
}

// validateSchema checks doc against the subset of JSON Schema JSONSchema emits.
func validateSchema(s map[string]any, doc any, path string) error {
	if c, ok := s["const"]; ok {
		if fmt.Sprint(c) != fmt.Sprint(doc) {
			return fmt.Errorf("%s: want %v", path, c)
		}
		return nil
	}
	if alts, ok := s["anyOf"].([]any); ok {
		for _, alt := range alts {
			if validateSchema(alt.(map[string]any), doc, path) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: %v matches no alternative", path, doc)
	}
	if req, ok := s["required"].([]any); ok {
		m, _ := doc.(map[string]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				return fmt.Errorf("%s: %s required", path, r)
			}
		}
	}
	types := map[string]bool{}
	switch ty := s["type"].(type) {
	case string:
		types[ty] = true
	case []any:
		for _, x := range ty {
			types[x.(string)] = true
		}
	}
	switch v := doc.(type) {
	case map[string]any:
		if !types["object"] {
			return fmt.Errorf("%s: a mapping is not allowed", path)
		}
		props, _ := s["properties"].(map[string]any)
		for k, val := range v {
			ps, ok := props[k]
			if !ok {
				if ap, ok := s["additionalProperties"].(map[string]any); ok {
					if err := validateSchema(ap, val, path+"."+k); err != nil {
						return err
					}
					continue
				}
				return fmt.Errorf("%s: unknown field %s", path, k)
			}
			if err := validateSchema(ps.(map[string]any), val, path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if !types["array"] {
			return fmt.Errorf("%s: a list is not allowed", path)
		}
		for i, x := range v {
			if err := validateSchema(s["items"].(map[string]any), x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case string:
		if !types["string"] {
			return fmt.Errorf("%s: %q: a string is not allowed", path, v)
		}
		if e, ok := s["enum"].([]any); ok && !slices.Contains(e, any(v)) {
			return fmt.Errorf("%s: %q not in %v", path, v, e)
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			return fmt.Errorf("%s: %q does not match %s", path, v, p)
		}
	case bool:
		if !types["boolean"] {
			return fmt.Errorf("%s: a boolean is not allowed", path)
		}
	case int, float64:
		if !types["integer"] && !types["number"] {
			return fmt.Errorf("%s: a number is not allowed", path)
		}
	}
	return nil
}
