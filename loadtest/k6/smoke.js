// Smoke: a few virtual users for 30 s on both lab routes, every response checked in depth.
// Proves the stack answers correctly; thresholds are strict because the load is light.
//
//   make loadtest                                                  (compose: this script)
//   docker compose -f compose/docker-compose.yml --profile loadtest run --rm k6
//   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/smoke.js  (k6 on the host)
//
// Knobs: SMOKE_VUS (4), SMOKE_DURATION (30s).
import { sleep } from 'k6';
import { ROUTES, SUMMARY_TREND_STATS, baseThresholds, envInt, hit } from './common.js';

export const options = {
  scenarios: {
    smoke: {
      executor: 'constant-vus',
      vus: envInt('SMOKE_VUS', 4),
      duration: __ENV.SMOKE_DURATION || '30s',
    },
  },
  thresholds: {
    ...baseThresholds(200, 500),
    // Both routes must have been exercised and hold on their own.
    'http_reqs{route:test}': ['count>10'],
    'http_reqs{route:users}': ['count>10'],
    'http_req_failed{route:test}': ['rate<0.01'],
    'http_req_failed{route:users}': ['rate<0.01'],
    'http_req_duration{route:test}': ['p(95)<200'],
    'http_req_duration{route:users}': ['p(95)<200'],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
  for (const route of ROUTES) {
    hit(route, true);
  }
  sleep(0.1);
}
