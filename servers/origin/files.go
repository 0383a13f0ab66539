package origin

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"sync/atomic"
	"time"
)

// fileServer serves a directory that something else (ffmpeg) writes. Paths are opened
// through an os.Root, so neither ".." nor a symlink can lead outside the directory.
type fileServer struct {
	root atomic.Pointer[os.Root] // nil after close
}

func newFileServer(dir string) (*fileServer, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	fs := &fileServer{}
	fs.root.Store(root)
	return fs, nil
}

var errClosed = errors.New("origin: directory closed")

// open opens a regular file below the root.
func (fs *fileServer) open(name string) (*os.File, os.FileInfo, error) {
	root := fs.root.Load()
	if root == nil {
		return nil, nil, errClosed
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, os.ErrNotExist
	}
	return f, fi, nil
}

func (fs *fileServer) close() error {
	if root := fs.root.Swap(nil); root != nil {
		return root.Close()
	}
	return nil
}

// serveFile serves a file of a served directory with the origin's content types and
// cache headers; a missing file, a directory, or a path leading outside is a 404.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, rt route) (int, int64) {
	f, fi, err := s.files.open(rt.file)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Debug("refused a file", "path", rt.file, "err", err)
		}
		return plainError(w, http.StatusNotFound, "not found: "+quote(rt.file))
	}
	defer f.Close()
	h := w.Header()
	h["Content-Type"] = []string{fileTypes[path.Ext(rt.file)].contentType}
	if rt.kind == kindSegment {
		h["Cache-Control"] = hdrSegmentCC
	} else {
		h["Cache-Control"] = hdrPlaylistCC
	}
	h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	// The ETag changes with every rewrite. Last-Modified has whole-second resolution, and
	// a playlist can be rewritten twice within a second, so playlists revalidate by ETag
	// only.
	h["Etag"] = []string{fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size())}
	modified := fi.ModTime()
	if rt.kind != kindSegment {
		modified = time.Time{}
	}
	return counted(w, r, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, rt.file, modified, f)
	}))
}
