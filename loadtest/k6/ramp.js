// Ramp: an open-model load (a target request rate, whatever the latency) rising in steps to
// RAMP_MAX_RATE requests/s, held, then back to zero. Watch the Grafana overview while it runs:
// request rate per route follows the steps, p95/p99 stay flat until something saturates.
// `dropped_iterations` counts requests k6 could not start on time (not enough VUs: the
// gateway or the box is saturated) and is held under a threshold.
//
//   K6_SCRIPT=ramp.js make loadtest
//   docker compose -f compose/docker-compose.yml --profile loadtest run --rm k6 run /scripts/ramp.js
//
// Knobs: RAMP_MAX_RATE (2000 req/s), RAMP_STEP (1m), RAMP_MAX_VUS (400).
import { SUMMARY_TREND_STATS, baseThresholds, envInt, hit, routeFor } from './common.js';

const MAX_RATE = envInt('RAMP_MAX_RATE', 2000);
const STEP = __ENV.RAMP_STEP || '1m';

export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.round(MAX_RATE / 20)),
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: envInt('RAMP_MAX_VUS', 400),
      stages: [
        { target: Math.round(MAX_RATE / 4), duration: STEP },
        { target: Math.round(MAX_RATE / 4), duration: STEP },
        { target: Math.round(MAX_RATE / 2), duration: STEP },
        { target: Math.round(MAX_RATE / 2), duration: STEP },
        { target: MAX_RATE, duration: STEP },
        { target: MAX_RATE, duration: STEP },
        { target: 0, duration: '30s' },
      ],
    },
  },
  thresholds: {
    ...baseThresholds(250, 1000),
    'http_req_duration{route:test}': ['p(95)<250'],
    'http_req_duration{route:users}': ['p(95)<250'],
    dropped_iterations: ['count<100'],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

// One request per iteration, alternating between the routes.
export default function () {
  hit(routeFor(__ITER), false);
}
