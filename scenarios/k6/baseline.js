// baseline — stampede's baseline scenario as a k6 script: VIEWERS viewers arrive evenly
// over RAMP (an open model: k6 starts each on schedule, however the servers answer) and
// each watches for WATCH, playing from the nearest of MIRRORS and calling COUNTER every 5 s.
// Every viewer is loadgen's player (hls.js defaults), one per VU.
//
//   bin/k6 run --no-usage-report -e URL=http://127.0.0.1:8081/live/master.m3u8 scenarios/k6/baseline.js
//   bin/k6 run --no-usage-report --local-ips 127.1.0.1-127.1.255.254 \
//     -e URL=http://127.0.0.1:8081/live/master.m3u8 -e MIRRORS=http://127.0.0.1:8081,http://127.0.0.1:8082 \
//     -e COUNTER=http://127.0.0.1:8090 -e VIEWERS=1000 -e RAMP=20s -e WATCH=60s scenarios/k6/baseline.js
//
// --local-ips gives each VU its own source address, as `stampede viewers` does on loopback.
// Thresholds (lib.js): no stall, no error, segment p99 under SEGMENT_P99_MS (500), start-up
// p90 under STARTUP_P90_MS (4000), no viewer started late.
import stampede from 'k6/x/stampede';
import { count, seconds, setting, target, thresholds, trendStats } from './lib.js';

const viewers = count('VIEWERS', '100');
// At least 2 s: the scenario then lasts at least 1 s, as k6 requires.
const ramp = Math.max(2, seconds(setting('RAMP', '20s')));
const watch = seconds(setting('WATCH', '60s'));

export const options = {
  scenarios: {
    baseline: {
      executor: 'constant-arrival-rate',
      rate: viewers,
      timeUnit: `${ramp}s`,
      // Arrivals fall at 0, Δ, 2Δ … (Δ = RAMP/VIEWERS); ending half a Δ early keeps the
      // one k6 would start at exactly RAMP, so VIEWERS viewers arrive, not VIEWERS+1.
      duration: `${Math.round(1000 * (ramp - ramp / viewers / 2))}ms`,
      preAllocatedVUs: viewers,
      // Each viewer keeps watching after the last one arrived.
      gracefulStop: `${watch + 10}s`,
    },
  },
  thresholds: thresholds('500', '4000'),
  summaryTrendStats: trendStats,
};

export default function () {
  stampede.watch(Object.assign(target(), { duration: `${watch}s` }));
}
