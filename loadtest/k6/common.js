// Shared by the k6 scripts (smoke.js, ramp.js, spike.js): the target, the two lab routes and
// one checked request. Not a test by itself (no default export): run the others.
//
// Target: BASE_URL (default http://gateway:8080, the gateway inside the compose network).
// From the host: k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/smoke.js
import http from 'k6/http';
import { check } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://gateway:8080').replace(/\/+$/, '');

// The lab config's routes (compose/rustygate.lab.yaml): /api/test goes to backend1 as is,
// /api/users is round-robined over the three backends with the prefix stripped.
export const ROUTES = [
  { name: 'test', path: '/api/test/echo', backendPath: '/api/test/echo' },
  { name: 'users', path: '/api/users/echo', backendPath: '/echo' },
];

// Every request is tagged route:<name>, so thresholds and the summary can be split per route
// (e.g. 'http_req_duration{route:users}').
export function routeFor(iteration) {
  return ROUTES[iteration % ROUTES.length];
}

// Integer environment knob with a default.
export function envInt(name, fallback) {
  const value = parseInt(__ENV[name] || '', 10);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

// The usual thresholds: fewer than 1% failed requests, every check holding 99% of the time.
export function baseThresholds(p95, p99) {
  return {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(95)<${p95}`, `p(99)<${p99}`],
    checks: ['rate>0.99'],
  };
}

export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'];

// GETs one route with its own X-Request-Id and checks the gateway's side of the contract:
// 200, the request id echoed back. With deep=true it also parses the mock backend's echo and
// checks the path the backend saw and the request id it received.
export function hit(route, deep) {
  const requestId = `k6-${__VU}-${__ITER}-${route.name}`;
  const res = http.get(`${BASE_URL}${route.path}`, {
    headers: { 'X-Request-Id': requestId },
    tags: { route: route.name },
  });
  const checks = {
    'status is 200': (r) => r.status === 200,
    'X-Request-Id echoed': (r) => r.headers['X-Request-Id'] === requestId,
  };
  if (deep) {
    checks['backend saw the expected path'] = (r) => echoOf(r).path === route.backendPath;
    checks['backend got the request id'] = (r) =>
      (echoOf(r).headers || []).some(([name, value]) => name === 'x-request-id' && value === requestId);
  }
  check(res, checks, { route: route.name });
  return res;
}

function echoOf(res) {
  try {
    return res.json() || {};
  } catch (e) {
    return {};
  }
}
