// Spike: a steady baseline, a sudden burst to SPIKE_RATE requests/s, then the baseline again.
// Three scenarios run one after the other, so the thresholds can say more than "no errors":
// the recovery phase must be as fast as the baseline was, i.e. the gateway does not stay slow
// (queues drained, no connection-pool or memory hangover) once the burst is over.
//
//   K6_SCRIPT=spike.js make loadtest
//   docker compose -f compose/docker-compose.yml --profile loadtest run --rm k6 run /scripts/spike.js
//
// Knobs: BASE_RATE (100 req/s), SPIKE_RATE (3000 req/s), SPIKE_MAX_VUS (600).
import { SUMMARY_TREND_STATS, envInt, hit, routeFor } from './common.js';

const BASE_RATE = envInt('BASE_RATE', 100);
const SPIKE_RATE = envInt('SPIKE_RATE', 3000);

// 30 s at the baseline rate, starting at `startTime`.
const steady = (startTime) => ({
  executor: 'constant-arrival-rate',
  rate: BASE_RATE,
  timeUnit: '1s',
  duration: '30s',
  preAllocatedVUs: 20,
  maxVUs: 100,
  startTime,
});

export const options = {
  scenarios: {
    baseline: steady('0s'),
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      preAllocatedVUs: 100,
      maxVUs: envInt('SPIKE_MAX_VUS', 600),
      stages: [
        { target: SPIKE_RATE, duration: '10s' },
        { target: SPIKE_RATE, duration: '30s' },
        { target: BASE_RATE, duration: '10s' },
      ],
      startTime: '30s',
    },
    recovery: steady('80s'),
  },
  thresholds: {
    // A spike may be slow, it must not fail.
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{scenario:spike}': ['p(95)<1000'],
    // Before and after the spike: the same fast service.
    'http_req_duration{scenario:baseline}': ['p(95)<100'],
    'http_req_duration{scenario:recovery}': ['p(95)<100'],
    'http_req_failed{scenario:recovery}': ['rate<0.001'],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
  hit(routeFor(__ITER), false);
}
