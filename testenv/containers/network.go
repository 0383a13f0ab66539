package containers

import (
	"context"
	"fmt"
	"maps"
	"net/netip"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// Network roles.
const (
	netEdge     = "edge"     // every server; published ports go through it
	netUpstream = "upstream" // internal: the origin and the mirrors
)

// netHandle is one network of a topology.
type netHandle struct {
	role    string
	id      string
	name    string
	gateway netip.Addr // where containers see the host's connections come from
}

// createNetwork creates a bridge network labelled for the topology. An internal one
// has no route off the host.
func (t *Topology) createNetwork(ctx context.Context, role string, internal bool) (*netHandle, error) {
	labels := baseLabels()
	labels[LabelTopology] = t.id
	labels[LabelRole] = role
	opts := []tcnetwork.NetworkCustomizer{tcnetwork.WithLabels(labels)}
	if internal {
		opts = append(opts, tcnetwork.WithInternal())
	}
	n, err := tcnetwork.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("containers: create the %s network: %w", role, err)
	}
	h := &netHandle{role: role, id: n.ID, name: n.Name}
	insp, err := t.d.cli.NetworkInspect(ctx, n.ID, client.NetworkInspectOptions{})
	if err != nil {
		n.Remove(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("containers: inspect the %s network: %w", role, err)
	}
	for _, c := range insp.Network.IPAM.Config {
		if c.Gateway.IsValid() && c.Gateway.Is4() {
			h.gateway = c.Gateway
			break
		}
	}
	return h, nil
}

func (h *netHandle) remove(ctx context.Context, d *daemon) error {
	_, err := d.cli.NetworkRemove(ctx, h.id, client.NetworkRemoveOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("containers: remove the %s network: %w", h.role, err)
	}
	return nil
}

// withLabels returns a copy of m with more labels.
func withLabels(m map[string]string, kv ...string) map[string]string {
	out := maps.Clone(m)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}
