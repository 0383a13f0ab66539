package report

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFileAtomic: the file is there whole, readable by anyone, with no temporary
// file left beside it; replacing it works; a missing directory is an error that leaves
// nothing behind.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.json")
	for _, body := range []string{"{\"a\": 1}\n", "{}\n"} { // create, then replace
		if err := WriteFileAtomic(path, []byte(body)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != body {
			t.Fatalf("read back %q, %v; want %q", got, err, body)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("mode %v, want 0644", st.Mode().Perm())
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Errorf("%d files in the directory, want only x.json: %v", len(ents), ents)
		}
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x.json"), []byte("{}")); err == nil {
		t.Error("a missing directory was not an error")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("the missing directory was created: %v", err)
	}
}

// TestWriteJSONFile: "" writes one line, an indent one field a line; both end in a
// newline and read back.
func TestWriteJSONFile(t *testing.T) {
	dir := t.TempDir()
	v := map[string]any{"a": 1, "b": []int{2}}
	for _, tc := range []struct {
		indent, want string
	}{
		{"", "{\"a\":1,\"b\":[2]}\n"},                         // compact, as series.json
		{" ", "{\n \"a\": 1,\n \"b\": [\n  2\n ]\n}\n"},       // one space, as servers.json
		{"  ", "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}\n"}, // two, as summary.json
	} {
		path := filepath.Join(dir, "v.json")
		if err := WriteJSONFile(path, v, tc.indent); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != tc.want {
			t.Errorf("indent %q: wrote %q, want %q", tc.indent, got, tc.want)
		}
	}
	if err := WriteJSONFile(filepath.Join(dir, "bad.json"), func() {}, ""); err == nil {
		t.Error("a value JSON cannot hold was written")
	}
}
