package containers

import (
	"context"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// dockerfile is the image's Dockerfile (FROM scratch, the binary, nothing else).
//
//go:embed Dockerfile
var dockerfile []byte

// ImageConfig configures BuildImage.
type ImageConfig struct {
	// Binary is a static (CGO off) linux stampede binary. Default: this process's own
	// executable, which must then be static (`make build` builds it so).
	Binary string
	// Repo is the image repository; default DefaultRepo. The tag is random.
	Repo string
	// BuildLog receives the build's output; default: discarded.
	BuildLog io.Writer
}

// Image is a stampede image built by this process.
type Image struct {
	// Ref is repo:tag, what containers are created from.
	Ref string
	// ID is the image id (sha256:…).
	ID string

	mu      sync.Mutex // protects removed
	removed bool
}

// BuildImage builds the image from the embedded FROM scratch Dockerfile and the
// binary, in a temporary build context, tagged repo:<random> and labelled with the
// session. Nothing is pulled. Remove it with Image.Remove.
func BuildImage(ctx context.Context, cfg ImageConfig) (*Image, error) {
	d, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		if cfg.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("containers: ImageConfig.Binary: find this executable: %w", err)
		}
	}
	if err := checkStatic(cfg.Binary); err != nil {
		return nil, err
	}
	// What a killed run of this host left behind goes first (best effort: a failure
	// here must not stop this run).
	SweepOrphans(ctx)
	if cfg.Repo == "" {
		cfg.Repo = DefaultRepo
	}
	if cfg.BuildLog == nil {
		cfg.BuildLog = io.Discard
	}
	dir, err := os.MkdirTemp("", "stampede-image-")
	if err != nil {
		return nil, fmt.Errorf("containers: build context: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
		return nil, fmt.Errorf("containers: build context: %w", err)
	}
	if err := copyFile(cfg.Binary, filepath.Join(dir, "stampede"), 0o755); err != nil {
		return nil, fmt.Errorf("containers: build context: %w", err)
	}

	tag := "s" + Session() + "-" + randomHex(4)
	sess := Session()
	req := &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context:        dir,
		Dockerfile:     "Dockerfile",
		Repo:           cfg.Repo,
		Tag:            tag,
		BuildArgs:      map[string]*string{"SESSION": &sess},
		BuildLogWriter: cfg.BuildLog,
		KeepImage:      true, // Image.Remove removes it, not a container's Terminate
		BuildOptionsModifier: func(o *client.ImageBuildOptions) {
			o.Labels = baseLabels()
			o.Remove, o.ForceRemove = true, true // no intermediate containers left
			o.PullParent = false
		},
	}}
	ref, err := d.provider.BuildImage(ctx, req)
	if err != nil {
		// A build that failed half way may have left layers with our label.
		removeImagesBySession(context.WithoutCancel(ctx), d, Session())
		return nil, fmt.Errorf("containers: build the image from %s: %w", cfg.Binary, err)
	}
	insp, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("containers: inspect the image %s: %w", ref, err)
	}
	return &Image{Ref: ref, ID: insp.ID}, nil
}

// Remove deletes the image and the layers built for it. Containers created from it
// must be gone first (Topology.Close). It is safe to call more than once.
func (im *Image) Remove(ctx context.Context) error {
	if im == nil {
		return nil
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.removed {
		return nil
	}
	d, err := connect(ctx)
	if err != nil {
		return err
	}
	_, err = d.cli.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("containers: remove the image %s: %w", im.Ref, err)
	}
	im.removed = true
	return nil
}

// removeImagesBySession removes every image labelled with the session, intermediate
// layers included.
func removeImagesBySession(ctx context.Context, d *daemon, sess string) error {
	imgs, err := d.cli.ImageList(ctx, client.ImageListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelSession+"="+sess)})
	if err != nil {
		return err
	}
	var errs []error
	for _, im := range imgs.Items {
		if _, err := d.cli.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkStatic refuses a binary that needs a dynamic loader: FROM scratch has none, and
// the container would die with a confusing "no such file or directory".
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("containers: ImageConfig.Binary %s: not a linux executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("containers: ImageConfig.Binary %s is dynamically linked; a FROM scratch image needs a static one: build it with CGO_ENABLED=0 (make build)", path)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
