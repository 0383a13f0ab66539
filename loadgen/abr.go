package loadgen

import (
	"math"
	"time"
)

// ewma is an exponentially weighted moving average whose samples are weighted by their
// duration in seconds, with the start-up bias removed (hls.js src/utils/ewma.ts).
type ewma struct {
	alpha       float64
	estimate    float64
	totalWeight float64
}

func newEWMA(halfLife float64) ewma {
	e := ewma{}
	if halfLife > 0 {
		e.alpha = math.Exp(math.Log(0.5) / halfLife)
	}
	return e
}

func (e *ewma) sample(weight, value float64) {
	adj := math.Pow(e.alpha, weight)
	e.estimate = value*(1-adj) + adj*e.estimate
	e.totalWeight += weight
}

func (e *ewma) get() float64 {
	if e.alpha == 0 {
		return e.estimate
	}
	return e.estimate / (1 - math.Pow(e.alpha, e.totalWeight))
}

// bandwidthEstimator is hls.js's EwmaBandWidthEstimator: two EWMAs of segment download
// throughput with different half-lives; the estimate is the smaller, so it drops fast and
// climbs slowly.
type bandwidthEstimator struct {
	fast, slow ewma
	def        float64 // bits/s used before the first sample
}

// minSampleDuration is hls.js's minDelayMs_: faster downloads count as 50 ms, so a
// segment served from a local cache does not claim infinite bandwidth.
const minSampleDuration = 50 * time.Millisecond

func newBandwidthEstimator(cfg *PlayerConfig) bandwidthEstimator {
	return bandwidthEstimator{
		fast: newEWMA(cfg.ABRFastHalfLife),
		slow: newEWMA(cfg.ABRSlowHalfLife),
		def:  float64(cfg.BandwidthEstimate),
	}
}

// sample adds one download: n bytes in d.
func (b *bandwidthEstimator) sample(d time.Duration, n int64) {
	if d < minSampleDuration {
		d = minSampleDuration
	}
	secs := d.Seconds()
	bps := float64(n) * 8 / secs
	b.fast.sample(secs, bps)
	b.slow.sample(secs, bps)
}

// estimate is the bandwidth in bits/s the player believes it has.
func (b *bandwidthEstimator) estimate() float64 {
	if b.fast.totalWeight < 0.001 { // hls.js minWeight_
		return b.def
	}
	return math.Min(b.fast.get(), b.slow.get())
}

// chooseLevel is hls.js's findBestLevel without its buffer-starvation terms: the highest
// rendition whose bitrate is below the estimate times BandwidthFactor (renditions at or
// below the current one) or BandwidthUpFactor (above it); the lowest when none fits.
// bandwidths are ascending; current is -1 before the first choice.
func chooseLevel(bandwidths []int64, current int, estimate float64, factor, upFactor float64) int {
	for i := len(bandwidths) - 1; i >= 0; i-- {
		adj := upFactor * estimate
		if i <= current {
			adj = factor * estimate
		}
		if adj > float64(bandwidths[i]) {
			return i
		}
	}
	return 0
}
