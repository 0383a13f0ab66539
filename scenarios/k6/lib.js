// Shared by the example scripts: settings come from the environment (k6 run -e NAME=value)
// so one script serves a laptop and a cluster.
//
//   URL      multivariant playlist URL (required); its path is used on every mirror
//   MIRRORS  mirror base URLs, comma-separated; viewers ping each and play from the nearest
//   COUNTER  viewer counter base URL; viewers call /api/viewers every 5 s
//   SEGMENT_P99_MS, STARTUP_P90_MS  thresholds (milliseconds)

// setting is the environment variable name, or fallback when it is unset or empty.
export function setting(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

// seconds reads a duration: "90", "90s", "1m30s", "500ms", "2h".
export function seconds(text) {
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const units = { ms: 0.001, s: 1, m: 60, h: 3600 };
  let total = 0;
  let rest = s;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (m === null) throw new Error(`"${text}" is not a duration like 90s or 1m30s`);
    total += Number(m[1]) * units[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
}

// count reads a positive whole number.
export function count(name, fallback) {
  const n = Number(setting(name, fallback));
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: want a whole number >= 1, got ${setting(name, fallback)}`);
  return n;
}

// target is where viewers play from: watch()'s url, mirrors and counter.
export function target() {
  const url = setting('URL', '');
  if (url === '') {
    throw new Error('set URL, e.g. k6 run -e URL=http://127.0.0.1:8081/live/master.m3u8 script.js');
  }
  const t = { url };
  const mirrors = setting('MIRRORS', '').split(',').map((m) => m.trim()).filter((m) => m !== '');
  if (mirrors.length > 0) t.mirrors = mirrors;
  const counter = setting('COUNTER', '');
  if (counter !== '') t.counter = counter;
  return t;
}

// thresholds gate the run the way `stampede gate` gates a summary: k6 exits 99 when one
// fails. dropped_iterations counts viewers k6 could not start on schedule (no free VU):
// like stampede's generator-bound flag, such a run did not apply the planned load.
export function thresholds(segmentP99Ms, startupP90Ms) {
  return {
    hls_stalls: ['count==0'],
    hls_errors: ['count==0'],
    hls_segment_duration: [`p(99)<${setting('SEGMENT_P99_MS', segmentP99Ms)}`],
    hls_startup_duration: [`p(90)<${setting('STARTUP_P90_MS', startupP90Ms)}`],
    dropped_iterations: ['count==0'],
  };
}

// trendStats are the statistics k6 reports for hls_* trends (and --summary-export).
export const trendStats = ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max', 'count'];
