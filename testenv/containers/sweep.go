package containers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Leftovers are Docker objects carrying a label, by kind.
type Leftovers struct {
	Containers []string // names
	Networks   []string // names
	Images     []string // ids, intermediate layers included
}

// Empty reports whether nothing was found.
func (l Leftovers) Empty() bool {
	return len(l.Containers) == 0 && len(l.Networks) == 0 && len(l.Images) == 0
}

func (l Leftovers) String() string {
	return fmt.Sprintf("containers %v, networks %v, images %v", l.Containers, l.Networks, l.Images)
}

// FindSession lists what remains of a session (LabelSession=sess) in Docker:
// containers in any state, networks, and images with their intermediate layers.
func FindSession(ctx context.Context, sess string) (Leftovers, error) {
	d, err := connect(ctx)
	if err != nil {
		return Leftovers{}, err
	}
	return find(ctx, d, LabelSession+"="+sess)
}

func find(ctx context.Context, d *daemon, label string) (Leftovers, error) {
	var l Leftovers
	f := make(client.Filters).Add("label", label)
	cs, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return l, err
	}
	for _, c := range cs.Items {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		l.Containers = append(l.Containers, name)
	}
	ns, err := d.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return l, err
	}
	for _, n := range ns.Items {
		l.Networks = append(l.Networks, n.Name)
	}
	is, err := d.cli.ImageList(ctx, client.ImageListOptions{All: true, Filters: f})
	if err != nil {
		return l, err
	}
	for _, im := range is.Items {
		l.Images = append(l.Images, im.ID)
	}
	return l, nil
}

// SweepSession removes every container, network and image of a session.
func SweepSession(ctx context.Context, sess string) error {
	d, err := connect(ctx)
	if err != nil {
		return err
	}
	return sweep(ctx, d, LabelSession+"="+sess, true)
}

// sweep removes containers (forcibly), then networks, then (with images) images
// carrying label.
func sweep(ctx context.Context, d *daemon, label string, images bool) error {
	f := make(client.Filters).Add("label", label)
	var errs []error
	cs, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	errs = append(errs, err)
	if err == nil {
		for _, c := range cs.Items {
			if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	ns, err := d.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	errs = append(errs, err)
	if err == nil {
		for _, n := range ns.Items {
			if _, err := d.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if images {
		is, err := d.cli.ImageList(ctx, client.ImageListOptions{All: true, Filters: f})
		errs = append(errs, err)
		if err == nil {
			for _, im := range is.Items {
				if _, err := d.cli.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("containers: remove what carries %s: %w", label, err)
	}
	return nil
}

// SweepOrphans removes what processes of this host that no longer run left in Docker
// (a run killed with SIGKILL cannot clean up, and Ryuk is off). It returns the
// sessions it swept. Objects of a live process, or of another host, are left alone.
func SweepOrphans(ctx context.Context) ([]string, error) {
	d, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	f := make(client.Filters).Add("label", LabelOwner)
	owners := map[string]string{} // session → owner
	cs, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	for _, c := range cs.Items {
		owners[c.Labels[LabelSession]] = c.Labels[LabelOwner]
	}
	ns, err := d.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, n := range ns.Items {
		owners[n.Labels[LabelSession]] = n.Labels[LabelOwner]
	}
	is, err := d.cli.ImageList(ctx, client.ImageListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, im := range is.Items {
		owners[im.Labels[LabelSession]] = im.Labels[LabelOwner]
	}
	var swept []string
	var errs []error
	for sess, own := range owners {
		if sess == "" || sess == Session() || !orphaned(own, host) {
			continue
		}
		if err := sweep(ctx, d, LabelSession+"="+sess, true); err != nil {
			errs = append(errs, err)
			continue
		}
		swept = append(swept, sess)
	}
	return swept, errors.Join(errs...)
}

// orphaned reports whether owner (host/pid) is a process of this host that is gone.
func orphaned(owner, host string) bool {
	h, p, ok := strings.Cut(owner, "/")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || h != host || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
