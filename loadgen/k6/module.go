// Package k6 is stampede's simulated HLS viewer as a k6 extension: a script imports
// k6/x/stampede and calls watch() in its default function; the VU then plays the stream
// for the given duration as one viewer — loadgen's Viewer, the same player model
// `stampede viewers` runs — and k6 gets its measurements as metrics (hls_*, see
// internal/watch/metrics.go) that thresholds gate and outputs export.
//
//	import stampede from 'k6/x/stampede';
//	export const options = { thresholds: { hls_stalls: ['count==0'] } };
//	export default function () {
//	  stampede.watch({ url: 'http://mirror:8081/live/master.m3u8', duration: '60s' });
//	}
//
// The viewer dials through the VU's dialer, so k6's --local-ips (one source address per
// VU), --hosts, --blacklist-ip and its data_sent/data_received counters apply, and uses
// the VU's TLS settings. It has no goroutine while it waits (its work runs on timers);
// the call blocks the VU until the session ends.
//
// This package is its own Go module because it links go.k6.io/k6 (AGPL-3.0); the
// stampede module itself does not.
package k6

import (
	"errors"
	"fmt"
	"time"

	"go.k6.io/k6/js/common"
	"go.k6.io/k6/js/modules"
	"go.k6.io/k6/metrics"

	"github.com/stampede-live/stampede/loadgen"
	"github.com/stampede-live/stampede/loadgen/k6/internal/watch"
)

// ImportPath is the name scripts import.
const ImportPath = "k6/x/stampede"

func init() {
	modules.Register(ImportPath, new(RootModule))
}

// RootModule is the extension, one per k6 process.
type RootModule struct{}

// ModuleInstance is the extension in one VU.
type ModuleInstance struct {
	vu      modules.VU
	metrics *watch.Metrics
}

var (
	_ modules.Module   = (*RootModule)(nil)
	_ modules.Instance = (*ModuleInstance)(nil)
)

// NewModuleInstance registers the hls_* metrics (once per run; later VUs get the same
// ones) in the init context of each VU that imports the module.
func (*RootModule) NewModuleInstance(vu modules.VU) modules.Instance {
	m, err := watch.RegisterMetrics(vu.InitEnv().Registry)
	if err != nil {
		common.Throw(vu.Runtime(), fmt.Errorf("%s: %w", ImportPath, err))
	}
	return &ModuleInstance{vu: vu, metrics: m}
}

// Exports is what scripts see: watch.
func (mi *ModuleInstance) Exports() modules.Exports {
	return modules.Exports{Named: map[string]any{"watch": mi.Watch}}
}

// Watch is watch(options): it plays one viewer's session on the VU and returns its
// totals (durations in milliseconds, as k6 reports them):
//
//	{reason, mirror, startup, played, stalls, stallTime, rebufferRatio, requests,
//	 errors, bytes, maxLag}
//
// reason is "stopped" (the duration passed, or k6 ended the iteration), "fatal" (a load
// failed past hls.js's retries) or "end" (the stream ended and was played out). Bad
// options throw, naming the option.
func (mi *ModuleInstance) Watch(options map[string]any) (map[string]any, error) {
	state := mi.vu.State()
	if state == nil {
		return nil, errors.New("stampede.watch: call it in the default function (a VU's iteration), not in the init context")
	}
	o, err := watch.Parse(options)
	if err != nil {
		return nil, fmt.Errorf("stampede.watch: %w", err)
	}
	ctx := mi.vu.Context()
	ctm := state.Tags.GetCurrentValues()
	tags := ctm.Tags
	if len(o.Tags) > 0 {
		tags = tags.WithTagsFromMap(o.Tags)
	}
	em := watch.NewEmitter(ctx, state.Samples, mi.metrics, tags, ctm.Metadata) // GetCurrentValues copied it
	cfg := o.Config
	cfg.Dial = state.Dialer.DialContext
	cfg.Player.TLS = state.TLSConfig
	cfg.Observe = em.Observe
	// Distinct per VU and iteration, stable across runs: seeds a random mirror choice.
	cfg.ID = int(state.VUIDGlobal)<<20 ^ int(state.Iteration)

	em.Joined(time.Now())
	res, err := loadgen.Watch(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("stampede.watch: %w", err)
	}
	ms := metrics.D // k6's unit for times: float milliseconds
	return map[string]any{
		"reason":        res.Reason,
		"mirror":        res.Mirror,
		"startup":       ms(res.Startup),
		"played":        ms(res.Played),
		"stalls":        res.Stalls,
		"stallTime":     ms(res.StallTime),
		"rebufferRatio": res.RebufferRatio,
		"requests":      res.Requests,
		"errors":        res.Errors,
		"bytes":         res.Bytes,
		"maxLag":        ms(res.MaxLag),
	}, nil
}
