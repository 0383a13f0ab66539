// flash-crowd — the thundering herd at stream start, as a k6 script: VIEWERS viewers press
// play within one second (after AT), as when an event begins, and each watches for WATCH.
// ramping-arrival-rate is k6's open-model schedule: the arrival rate climbs to
// (2×VIEWERS+1)/s over half a second and falls back to 0 over the next half, so VIEWERS
// viewers arrive within one second whatever the servers do (k6 starts the n-th when the
// rate's integral reaches n; the +1 keeps rounding from losing the last one).
//
//   bin/k6 run --no-usage-report -e URL=http://127.0.0.1:8081/live/master.m3u8 -e VIEWERS=2000 scenarios/k6/flash-crowd.js
//
// Thresholds (lib.js): no stall, no error, segment p99 under SEGMENT_P99_MS (2000: a
// herd queues), start-up p90 under STARTUP_P90_MS (4000, as stampede's flash-crowd
// scenario), no viewer started late.
import stampede from 'k6/x/stampede';
import { count, seconds, setting, target, thresholds, trendStats } from './lib.js';

const viewers = count('VIEWERS', '1000');
const at = seconds(setting('AT', '0s'));
const watch = seconds(setting('WATCH', '40s'));

export const options = {
  scenarios: {
    flash: {
      executor: 'ramping-arrival-rate',
      startTime: `${at}s`,
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: viewers,
      stages: [
        { target: 2 * viewers + 1, duration: '500ms' },
        { target: 0, duration: '500ms' },
      ],
      gracefulStop: `${watch + 10}s`,
    },
  },
  thresholds: thresholds('2000', '4000'),
  summaryTrendStats: trendStats,
};

export default function () {
  stampede.watch(Object.assign(target(), { duration: `${watch}s` }));
}
