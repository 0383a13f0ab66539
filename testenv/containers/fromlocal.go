package containers

import (
	"fmt"

	"github.com/stampede-live/stampede/testenv/local"
)

// FromLocal turns the local environment's description of a relay into a Spec, so a
// runner that builds a local.TopologyConfig from a scenario runs the same relay in
// containers: the same flags, labels, nofile, GOMAXPROCS, restart policies, log
// directory and event hook. What only the local environment has is refused with an
// error naming the field: nginx mirrors (the image holds only stampede), round trips
// added by proxies, and the origin's shared uplink. CPU and memory limits, which the
// local environment cannot apply, are set on the returned Spec's roles.
func FromLocal(tc local.TopologyConfig, img *Image) (Spec, error) {
	switch {
	case tc.OriginRTT > 0:
		return Spec{}, fmt.Errorf("containers: TopologyConfig.OriginRTT %s: added round trips need the local environment's proxies", tc.OriginRTT)
	case tc.OriginUplink > 0:
		return Spec{}, fmt.Errorf("containers: TopologyConfig.OriginUplink %v: the shared uplink needs the local environment's proxies", tc.OriginUplink)
	}
	spec := Spec{
		Image:         img,
		LogDir:        tc.LogDir,
		Labels:        tc.Labels,
		Origin:        roleOf(tc.Origin),
		OriginExposed: tc.OriginExposed,
		Grace:         tc.Grace,
		OnEvent:       tc.OnEvent,
		Logger:        tc.Logger,
	}
	for i, m := range tc.Mirrors {
		switch {
		case m.Kind != "" && m.Kind != local.MirrorStampede:
			return Spec{}, fmt.Errorf("containers: TopologyConfig.Mirrors[%d].Kind %q: the image runs stampede mirrors only; run nginx mirrors with the local environment", i, m.Kind)
		case m.RTT > 0 || m.UpstreamRTT > 0:
			return Spec{}, fmt.Errorf("containers: TopologyConfig.Mirrors[%d]: added round trips (rtt %s, upstream %s) need the local environment's proxies", i, m.RTT, m.UpstreamRTT)
		}
		spec.Mirrors = append(spec.Mirrors, roleOf(m.ServerSpec))
	}
	if tc.Counter != nil {
		r := roleOf(*tc.Counter)
		spec.Counter = &r
	}
	return spec, nil
}

func roleOf(s local.ServerSpec) Role {
	return Role{Args: s.Args, Limits: Limits{Nofile: s.Nofile}, GOMAXPROCS: s.GOMAXPROCS, Restart: s.Restart}
}
