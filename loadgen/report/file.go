package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path through a temporary file in the same directory
// and a rename, so a reader (a CI step, a browser, `stampede gate`) never sees half a
// file. The file is 0644: CreateTemp makes 0600 files, and what a run writes is meant
// to be read by CI and people. The directory must exist.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteJSONFile writes v as JSON and a newline to path with WriteFileAtomic: on one
// line when indent is "", else one field a line, nested fields indented by indent.
func WriteJSONFile(path string, v any, indent string) error {
	var b []byte
	var err error
	if indent == "" {
		b, err = json.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", indent)
	}
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// readJSONFile decodes the JSON file at path; what names its kind in the error.
func readJSONFile[T any](path, what string) (*T, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: not a %s: %w", path, what, err)
	}
	return &v, nil
}
