#!/usr/bin/env python3
"""The lab demo: one scenario runner for the compose stack and the native lab.

Each scenario prints PASS, FAIL or SKIP with its evidence (status codes, counts, metric values);
the run exits 1 if any scenario failed. Endpoints come from the environment, so the same script
runs unchanged against `make up` with Docker and against the native lab:

  GATEWAY_URL     (default http://127.0.0.1:8080)
  ADMIN_URL       (default http://127.0.0.1:8081)
  ADMIN_TOKEN     (default lab-admin-token)
  PROMETHEUS_URL  (default http://127.0.0.1:9090)
  JAEGER_URL      Jaeger's query API (default http://127.0.0.1:16686; natively the otlp-sink)
  LAB_CONFIG      the lab gateway's config file, edited by the reload scenario and restored
                  (default compose/rustygate.lab.yaml: the file both labs run)
  LAB_MODE        native | compose: how "stop/start backend N" is done (scripts/lab.sh or
                  `docker compose stop backendN`), for the failover scenario
  JWT_SECRET      the lab JWT policy's HMAC secret (default: compose/.env's, else the lab default)
  PLUGINS_DIR     the lab gateway's plugins.dir on this host, where the plugin scenario swaps a
                  .wasm file and puts it back (default ./plugins, built by `make plugins`)
  LAB_API_KEY     the key the lab's require-api-key plugin accepts (default lab-api-key)
  BACKEND_URLS    the mock backends as published on this host, comma-separated
                  (default http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003)
  GATEWAY_HTTPS_URL  the HTTPS listener (default https://localhost:8443)
  LAB_CA          the lab CA that signed its certificate (default compose/certs/ca.pem,
                  made by `make lab-certs`)

Usage: scripts/demo.py [SCENARIO ...]   (default: all)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
from labkit.http import request as http  # noqa: E402  (status, headers, body); any status is an answer
from labkit.jwt import mint_hs256  # noqa: E402
from labkit.metrics import Prometheus, read_metric  # noqa: E402
from labkit.waiting import wait_until  # noqa: E402
from labkit.binaries import default_bin  # noqa: E402
from labkit.ports import pick_ports  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402
from labkit.tls import ca_signed  # noqa: E402

GATEWAY = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080").rstrip("/")
ADMIN = os.environ.get("ADMIN_URL", "http://127.0.0.1:8081").rstrip("/")
TOKEN = os.environ.get("ADMIN_TOKEN", "lab-admin-token")
PROMETHEUS = os.environ.get("PROMETHEUS_URL", "http://127.0.0.1:9090").rstrip("/")
JAEGER = os.environ.get("JAEGER_URL", "http://127.0.0.1:16686").rstrip("/")
LAB_MODE = os.environ.get("LAB_MODE", "native")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_CONFIG = os.environ.get("LAB_CONFIG", os.path.join(ROOT, "compose/rustygate.lab.yaml"))
PLUGINS_DIR = os.environ.get("PLUGINS_DIR", os.path.join(ROOT, "plugins"))
LAB_API_KEY = os.environ.get("LAB_API_KEY", "lab-api-key")


def env_file_value(name: str) -> str | None:
    """A value from compose/.env, which the compose stack reads for the gateway too."""
    try:
        with open(os.path.join(ROOT, "compose/.env")) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == name and not line.lstrip().startswith("#"):
                    return value
    except OSError:
        pass
    return None


BACKENDS = os.environ.get("BACKEND_URLS", "http://127.0.0.1:8001,http://127.0.0.1:8002,"
                          "http://127.0.0.1:8003").split(",")
JWT_SECRET = (os.environ.get("JWT_SECRET") or env_file_value("JWT_SECRET")
              or "rustygate-lab-secret-change-me-0123456789")


class Skip(Exception):
    """The scenario's part is absent; the message says why."""


class Fail(Exception):
    """The scenario ran and did not hold; the message is the evidence."""


def expect(cond: bool, evidence: str) -> None:
    if not cond:
        raise Fail(evidence)


class BackgroundLoad:
    """Four clients sending GET `path` until the `with` block ends; an answer counts as ok when
    `ok(status, headers)` holds, and `on_ok(body)` sees each ok body (under the lock)."""

    def __init__(self, path: str, ok=lambda status, headers: status == 200, on_ok=None, clients: int = 4):
        self.path, self.ok, self.on_ok = path, ok, on_ok
        self.counts = {"ok": 0, "failed": 0}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self.stop.is_set():
            status, headers, body = http("GET", f"{GATEWAY}{self.path}", timeout=10)
            with self.lock:
                if self.ok(status, headers):
                    self.counts["ok"] += 1
                    if self.on_ok:
                        self.on_ok(body)
                else:
                    self.counts["failed"] += 1
            time.sleep(0.01)

    def __enter__(self) -> "BackgroundLoad":
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(timeout=15)

    def expect_no_failure(self) -> None:
        c = self.counts
        expect(c["failed"] == 0, f"{c['failed']} client requests failed of {c['ok'] + c['failed']}")


def backend(n: int, action: str) -> None:
    """The adapter for "stop/start backend N" (used by the failover scenario)."""
    if LAB_MODE == "compose":
        cmd = ["docker", "compose", "-f", os.path.join(ROOT, "compose/docker-compose.yml"), action, f"backend{n}"]
    else:
        cmd = [os.path.join(ROOT, "scripts/lab.sh"), f"{action}-backend", str(n)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


# === scenarios ===


def routing() -> str:
    status, _, body = http("GET", f"{GATEWAY}/api/test/echo")
    expect(status == 200, f"GET /api/test/echo -> {status}")
    echo = json.loads(body)
    expect(echo.get("path") == "/api/test/echo", f"backend saw path {echo.get('path')!r}")
    seen = []
    for _ in range(3):
        status, _, body = http("GET", f"{GATEWAY}/api/users/echo")
        expect(status == 200, f"GET /api/users/echo -> {status}")
        seen.append(json.loads(body)["backend"])
    expect(len(set(seen)) == 3, f"round robin over 3 backends gave {seen}")
    status, headers, body = http("GET", f"{GATEWAY}/no/such/route")
    err = json.loads(body)
    expect(status == 404 and err.get("error") == "not_found", f"unrouted -> {status} {err}")
    status, _, body = http("GET", f"{GATEWAY}/")
    expect(status == 200 and body == b"RustyGate is running", f"GET / -> {status} {body[:40]!r}")
    return f"/api/test -> {echo['backend']}; /api/users x3 -> {', '.join(seen)}; unrouted -> 404 not_found"


def request_id() -> str:
    rid = f"demo-{uuid.uuid4().hex[:12]}"
    status, headers, body = http("GET", f"{GATEWAY}/api/test/echo", {"X-Request-Id": rid})
    expect(status == 200, f"-> {status}")
    expect(headers.get("x-request-id") == rid, f"response X-Request-Id {headers.get('x-request-id')!r} != {rid}")
    seen = [v for k, v in json.loads(body)["headers"] if k == "x-request-id"]
    expect(seen == [rid], f"backend saw {seen}")
    status, headers, _ = http("GET", f"{GATEWAY}/api/test/echo", {"X-Request-Id": "not valid!"})
    new = headers.get("x-request-id", "")
    expect(new != "not valid!" and len(new) == 36, f"invalid id came back as {new!r}")
    return f"kept {rid} end to end; invalid id replaced by {new}"


def metrics_in_prometheus() -> str:
    status, _, body = http("GET", f"{ADMIN}/metrics")
    expect(status == 200, f"admin /metrics -> {status}")
    text = body.decode()
    expect('rustygate_requests_total{method="GET",route="test",status="200"}' in text,
           "gateway /metrics lacks rustygate_requests_total for route test")
    try:
        http("GET", f"{PROMETHEUS}/-/ready", timeout=3)
    except OSError as e:
        raise Skip(f"no Prometheus at {PROMETHEUS} ({e}); the gateway's own /metrics is fine") from None
    query = 'sum by (route) (rustygate_requests_total{route="test"})'
    prometheus = Prometheus(PROMETHEUS)
    found: list[float] = []

    def scraped() -> bool:
        value = prometheus.scalar(query)
        if value is not None:
            found.append(value)
        return value is not None

    if wait_until(scraped, 30, interval=1) is None:
        raise Fail(f"Prometheus returned nothing for {query} within 30 s")
    expect(found[-1] >= 1, f"{query} = {found[-1]}")
    return f"Prometheus scraped the gateway: {query} = {found[-1]:g}"


def gateway_metric(name: str, **labels: str) -> float:
    """The sum of a metric's samples on the gateway's /metrics whose labels include `labels`."""
    return read_metric(f"{ADMIN}/metrics", name, labels, timeout=10) or 0.0


def backend_attempts(upstream: str) -> float:
    """Upstream attempts the gateway counted for one upstream (its /metrics)."""
    return gateway_metric("rustygate_backend_requests_total", upstream=upstream)


def hs256_token(claims: dict) -> str:
    """A JWT signed with the lab's secret (what `rustygate token` does, in the standard library)."""
    return mint_hs256(JWT_SECRET, claims)


def auth_401() -> str:
    now = int(time.time())
    good = {"sub": "alice", "iss": "rustygate-lab", "aud": "lab-api", "exp": now + 300}
    before_attempts = backend_attempts("users")
    before_rejected = gateway_metric("rustygate_auth_rejected_total", route="secure")
    status, headers, body = http("GET", f"{GATEWAY}/api/secure/echo")
    challenge = headers.get("www-authenticate", "")
    expect(status == 401 and challenge.startswith("Bearer"), f"no token -> {status}, WWW-Authenticate {challenge!r}")
    expect(json.loads(body).get("error") == "unauthorized", f"no token: body {body[:80]!r}")
    expired = hs256_token(dict(good, exp=now - 600))
    status, headers, _ = http("GET", f"{GATEWAY}/api/secure/echo", {"Authorization": f"Bearer {expired}"})
    expired_challenge = headers.get("www-authenticate", "")
    expect(status == 401 and "expired" in expired_challenge, f"expired -> {status} {expired_challenge!r}")
    token = hs256_token(good)
    status, _, body = http("GET", f"{GATEWAY}/api/secure/echo",
                           {"Authorization": f"Bearer {token}", "X-User-Id": "mallory"})
    expect(status == 200, f"valid token -> {status} {body[:120]!r}")
    user = [v for k, v in json.loads(body)["headers"] if k == "x-user-id"]
    expect(user == ["alice"], f"backend saw X-User-Id {user} (the client's forged copy must be replaced)")
    attempts = backend_attempts("users") - before_attempts
    rejected = gateway_metric("rustygate_auth_rejected_total", route="secure") - before_rejected
    expect(attempts == 1, f"backend attempts rose by {attempts:g}; only the valid request may reach it")
    expect(rejected == 2, f"rustygate_auth_rejected_total{{route=secure}} rose by {rejected:g}, expected 2")
    return (f"no token -> 401 ({challenge}); expired -> 401; valid -> 200, backend saw X-User-Id alice "
            f"(forged 'mallory' dropped); backend reached once; auth_rejected_total +{rejected:g}")


def raw_get(target: str, extra: str = "") -> tuple[int, bytes]:
    """Sends `GET target` exactly as written (no client-side path clean-up) and returns the
    status and the body."""
    import socket
    host, port = GATEWAY.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: demo.test\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def hostile_input() -> str:
    before_attempts = backend_attempts("users")
    before_refused = gateway_metric("rustygate_client_errors_total", reason="ambiguous_dot_segment")
    # Resolved before routing: a request for /api/secure, which needs its token.
    status, _ = raw_get("/api/test/../secure/echo", "X-User-Id: admin\r\n")
    expect(status == 401, f"/api/test/../secure/echo -> {status}, expected 401 (routed as /api/secure)")
    status, body = raw_get("/api/test/..%2fsecure/echo")
    expect(status == 400 and json.loads(body).get("error") == "bad_request", f"..%2f -> {status} {body[:80]!r}")
    status, body = raw_get("/api/test/echo", "X-User-Id: mallory\r\nX_User_Id: mallory\r\n")
    seen = [k for k, _ in json.loads(body)["headers"]] if status == 200 else []
    expect(status == 200 and "x-user-id" not in seen and "x_user_id" not in seen,
           f"public route: {status}, backend saw headers {seen}")
    attempts = backend_attempts("users") - before_attempts
    expect(attempts == 0, f"the protected route's upstream saw {attempts:g} attempts; expected none")
    refused = gateway_metric("rustygate_client_errors_total", reason="ambiguous_dot_segment") - before_refused
    expect(refused == 1, f"rustygate_client_errors_total{{reason=ambiguous_dot_segment}} rose by {refused:g}")
    return ("/api/test/../secure/echo -> 401 (normalised, then auth); ..%2f -> 400 bad_request; forged "
            "X-User-Id and X_User_Id dropped on a public route; 0 attempts on the protected upstream; "
            f"client_errors_total{{reason=ambiguous_dot_segment}} +{refused:g}")


def rate_limit_429() -> str:
    before = gateway_metric("rustygate_rate_limited_total", route="limited")
    statuses, refused = [], None
    for _ in range(12):  # the policy allows 5 a minute: a burst of 12 must run into it
        status, headers, _ = http("GET", f"{GATEWAY}/api/limited/echo")
        statuses.append(status)
        if status == 429 and refused is None:
            refused = headers
    expect(refused is not None, f"12 requests in a burst, no 429: {statuses}")
    expect(statuses == sorted(statuses), f"a 200 after a 429 within the burst: {statuses}")
    retry = refused.get("retry-after", "")
    expect(retry.isdigit() and int(retry) >= 1, f"429 Retry-After {retry!r}")
    expect(refused.get("ratelimit-remaining") == "0", f"429 RateLimit-Remaining {refused.get('ratelimit-remaining')!r}")
    policy = refused.get("ratelimit-policy", "")
    expect(policy == '"demo-burst";q=5;w=60', f"RateLimit-Policy {policy!r}")
    count = statuses.count(429)
    rose = gateway_metric("rustygate_rate_limited_total", route="limited") - before
    expect(rose == count, f"rustygate_rate_limited_total{{route=limited}} rose by {rose:g}, expected {count}")
    return (f"burst of 12 -> {statuses.count(200)}x200 then {count}x429, Retry-After {retry}s, "
            f"RateLimit {refused.get('ratelimit', '')!r}; rate_limited_total +{rose:g}")


def cors_preflight() -> str:
    before = backend_attempts("test")
    allowed = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "content-type"}
    status, headers, _ = http("OPTIONS", f"{GATEWAY}/api/test/echo", allowed)
    expect(status == 204, f"allowed preflight -> {status}")
    acao = headers.get("access-control-allow-origin")
    expect(acao == "http://localhost:3000", f"allowed preflight: Access-Control-Allow-Origin {acao!r}")
    denied = dict(allowed, Origin="https://evil.example")
    status, headers, _ = http("OPTIONS", f"{GATEWAY}/api/test/echo", denied)
    expect(status == 403 and "access-control-allow-origin" not in headers,
           f"disallowed preflight -> {status}, ACAO {headers.get('access-control-allow-origin')!r}")
    status, headers, _ = http("GET", f"{GATEWAY}/api/test/echo", {"Origin": "http://localhost:3000"})
    expect(headers.get("access-control-allow-origin") == "http://localhost:3000", "GET from the allowed origin lacks ACAO")
    after = backend_attempts("test")
    expect(after - before == 1, f"backend attempts rose by {after - before:g}; only the GET should reach it")
    return f"allowed origin -> 204 + ACAO {acao}; evil origin -> 403 without ACAO; backend saw only the GET"


def users_backends() -> list[dict]:
    """The `users` upstream's backends as /admin/upstreams reports them."""
    status, _, body = http("GET", f"{ADMIN}/admin/upstreams", {"Authorization": f"Bearer {TOKEN}"})
    expect(status == 200, f"/admin/upstreams -> {status}")
    ups = {u["name"]: u for u in json.loads(body)["upstreams"]}
    return ups["users"]["backends"]


def backend_up(label: str) -> float:
    return gateway_metric("rustygate_backend_up", upstream="users", backend=label)


def failover() -> str:
    """Under load, stop backend 2: no client error, it leaves rotation, traffic spreads over the
    others; start it again: it comes back."""
    label = users_backends()[1]["url"]
    served: dict[str, int] = {}

    def count_backend(body: bytes) -> None:
        name = json.loads(body)["backend"]
        served[name] = served.get(name, 0) + 1

    with BackgroundLoad("/api/users/echo", on_ok=count_backend) as load:
        lock = load.lock
        time.sleep(1)  # load before the stop
        backend(2, "stop")
        down_after = wait_until(lambda: backend_up(label) == 0, 4.5, interval=0.1)
        expect(down_after is not None, f"{label} still up 4.5 s after it stopped (2 intervals: 4 s)")
        with lock:
            served.clear()
        time.sleep(2)  # the traffic measured while backend2 is out
        with lock:
            during = dict(served)
        backend(2, "start")
        up_after = wait_until(lambda: backend_up(label) == 1, 8, interval=0.1)
        expect(up_after is not None, f"{label} not back 8 s after its restart")
        time.sleep(1.5)  # load after the restart: backend2 must take some, and no request may fail
    load.expect_no_failure()
    expect("backend2" not in during and len(during) == 2, f"while backend2 was down, traffic went to {during}")
    with lock:
        back = served.get("backend2", 0)
    expect(back > 0, "backend2 took no traffic after its restart")
    return (f"{load.counts['ok']} requests, 0 failed; backend2 out of rotation {down_after:.1f} s after the stop "
            f"(rustygate_backend_up 0), traffic meanwhile {during}; back {up_after:.1f} s after its restart")


def slow_backend() -> str:
    """Backend 1 answers in 1.5 s, beyond the 1 s per-attempt timeout: its requests time out and
    are retried on another backend; clients see 200s."""
    before = gateway_metric("rustygate_retries_total", upstream="users")
    control = f"{BACKENDS[0].rstrip('/')}/control/latency"
    status, _, _ = http("POST", control, {"Content-Type": "application/json"}, b'{"ms": 1500}')
    expect(status == 200, f"POST {control} -> {status}")
    slowest, answered = 0.0, []
    try:
        for _ in range(6):  # round robin: backend1 gets two of six
            t0 = time.time()
            status, _, body = http("GET", f"{GATEWAY}/api/users/echo", timeout=10)
            slowest = max(slowest, time.time() - t0)
            expect(status == 200, f"GET /api/users/echo -> {status} {body[:100]!r}")
            answered.append(json.loads(body)["backend"])
    finally:
        http("POST", control, {"Content-Type": "application/json"}, b'{"ms": 0}')
    retries = gateway_metric("rustygate_retries_total", upstream="users") - before
    expect("backend1" not in answered, f"backend1 answered despite its latency: {answered}")
    expect(retries >= 1, f"rustygate_retries_total{{upstream=users}} rose by {retries:g}")
    return (f"6 requests, all 200 from {sorted(set(answered))}; backend1's timed out after 1 s and were "
            f"retried (retries_total +{retries:g}); slowest answer {slowest:.2f} s")


def jaeger_trace(trace_id: str, want_spans: int, timeout: float = 15) -> list[dict]:
    """The spans of a trace through Jaeger's query API, once it holds `want_spans` of them
    (spans are exported in batches, about a second after the request)."""
    spans: list[dict] = []

    def complete() -> bool:
        nonlocal spans
        try:
            status, _, body = http("GET", f"{JAEGER}/api/traces/{trace_id}", timeout=5)
        except OSError as e:
            raise Skip(f"Jaeger's query API {JAEGER} does not answer ({e})") from None
        if status == 200:
            data = json.loads(body).get("data") or []
            spans = data[0]["spans"] if data else []
        return len(spans) >= want_spans

    if wait_until(complete, timeout, interval=0.5) is not None:
        return spans
    raise Fail(f"trace {trace_id}: {len(spans)} span(s) in {JAEGER} after {timeout:.0f} s, wanted {want_spans}")


def tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def parent_of(span: dict) -> str | None:
    refs = [r for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def trace() -> str:
    """Requests carrying a known `traceparent`, one of them retried (backend 1 is made slower
    than the route's timeout): each trace in Jaeger holds the gateway's SERVER span under the
    caller's span and one CLIENT span per attempt; the backend saw the CLIENT span as parent."""
    control = f"{BACKENDS[0].rstrip('/')}/control/latency"
    status, _, _ = http("POST", control, {"Content-Type": "application/json"}, b'{"ms": 1500}')
    expect(status == 200, f"POST {control} -> {status}")
    sent = []
    try:
        for _ in range(3):  # round robin: one of three starts on backend 1 and is retried
            trace_id, caller = uuid.uuid4().hex, uuid.uuid4().hex[:16]
            status, headers, body = http("GET", f"{GATEWAY}/api/users/echo",
                                         {"traceparent": f"00-{trace_id}-{caller}-01"}, timeout=10)
            expect(status == 200, f"GET /api/users/echo -> {status} {body[:100]!r}")
            response = headers.get("traceresponse") or ""
            expect(response.startswith(f"00-{trace_id}-"), f"traceresponse {response!r} is not in trace {trace_id}")
            sent.append((trace_id, caller, json.loads(body).get("traceparent") or ""))
    finally:
        http("POST", control, {"Content-Type": "application/json"}, b'{"ms": 0}')
    retried = None
    for trace_id, caller, backend_parent in sent:
        spans = jaeger_trace(trace_id, 2)
        servers = [s for s in spans if tags(s).get("span.kind") == "server" and s["operationName"] == "GET users"]
        expect(len(servers) == 1, f"trace {trace_id}: {len(servers)} gateway SERVER span(s) 'GET users'")
        server = servers[0]
        expect(parent_of(server) == caller, f"trace {trace_id}: SERVER span's parent {parent_of(server)} != {caller}")
        clients = sorted((s for s in spans if tags(s).get("span.kind") == "client" and parent_of(s) == server["spanID"]),
                         key=lambda s: s["startTime"])
        expect(clients, f"trace {trace_id}: no CLIENT span under the SERVER span")
        last = clients[-1]
        expect(backend_parent == f"00-{trace_id}-{last['spanID']}-01",
               f"trace {trace_id}: the backend saw traceparent {backend_parent!r}, not the last CLIENT span {last['spanID']}")
        if len(clients) == 2:
            first, second = tags(clients[0]), tags(clients[1])
            expect(second.get("http.request.resend_count") == 1,
                   f"trace {trace_id}: the second attempt's resend_count is {second.get('http.request.resend_count')}")
            expect(first.get("error.type") == "timeout", f"trace {trace_id}: the first attempt's error.type is "
                   f"{first.get('error.type')}")
            retried = (trace_id, first.get("rustygate.backend"), second.get("rustygate.backend"))
    expect(retried is not None, f"none of the 3 traces shows a retried request: {[t for t, _, _ in sent]}")
    return (f"3 traces found in {JAEGER} with the caller's span as parent of 'GET users' and the backend "
            f"under the CLIENT span; trace {retried[0]}: attempt 1 to {retried[1]} timed out, attempt 2 "
            f"(resend_count 1) to {retried[2]} answered")


def write_by_rename(path: str, text: str) -> None:
    """Replaces a file the way editors do: a temporary file renamed over it."""
    tmp = path + ".demo-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def reload() -> str:
    """While clients keep sending requests: add a route and change a backend weight in the lab
    config file → the gateway's file watcher reloads it and the new route answers within 3 s,
    no request fails; then an invalid edit → rejected (counted), the gateway keeps serving; the
    file is restored at the end."""
    with open(LAB_CONFIG) as f:
        original = f.read()
    marker = "routes:\n"
    if marker not in original or "/api/reloaded" in original:
        raise Fail(f"{LAB_CONFIG} is not the lab config this scenario knows (or a previous run left its edit)")
    added = original.replace(marker, marker + "  # added by the demo's reload scenario\n"
                             "  - { name: reloaded, path: /api/reloaded, upstream: users, strip_prefix: true }\n", 1)
    added = added.replace('- url: "${BACKEND1_URL:-http://127.0.0.1:8001}"\n',
                          '- url: "${BACKEND1_URL:-http://127.0.0.1:8001}"\n        weight: 2\n', 1)
    generation = gateway_metric("rustygate_config_generation")
    errors = gateway_metric("rustygate_config_reloads_total", result="error")
    how = "the file watcher"
    try:
        with BackgroundLoad("/api/users/echo") as load:
            time.sleep(0.5)  # load before the edit: requests in flight across the reload
            write_by_rename(LAB_CONFIG, added)
            took = wait_until(lambda: http("GET", f"{GATEWAY}/api/reloaded/echo")[0] == 200, 3)
            if took is None:
                # File events do not cross every bind mount (Docker Desktop): say so, reload by hand.
                status, _, body = http("POST", f"{ADMIN}/admin/reload", {"Authorization": f"Bearer {TOKEN}"})
                expect(status == 200, f"the new route did not answer within 3 s, and POST /admin/reload -> {status} {body[:200]!r}")
                how = "POST /admin/reload (no file event arrived within 3 s)"
                took = wait_until(lambda: http("GET", f"{GATEWAY}/api/reloaded/echo")[0] == 200, 3)
                expect(took is not None, "the new route does not answer after POST /admin/reload")
            new_generation = gateway_metric("rustygate_config_generation")
            expect(new_generation > generation, f"rustygate_config_generation stayed {new_generation:g}")
            write_by_rename(LAB_CONFIG, added + "routes: [ this is not valid\n")
            if wait_until(lambda: gateway_metric("rustygate_config_reloads_total", result="error") > errors, 3) is None:
                status, _, _ = http("POST", f"{ADMIN}/admin/reload", {"Authorization": f"Bearer {TOKEN}"})
                expect(status == 422, f"the invalid edit: POST /admin/reload -> {status}, not 422")
            status, _, _ = http("GET", f"{GATEWAY}/api/reloaded/echo")
            expect(status == 200, f"after the invalid edit the gateway answered {status}")
            expect(gateway_metric("rustygate_config_generation") == new_generation, "the invalid edit moved the generation")
            time.sleep(0.5)  # load after the reloads
    finally:
        write_by_rename(LAB_CONFIG, original)
    # Back to the original file (the watcher picks it up; POST as a fallback).
    if wait_until(lambda: http("GET", f"{GATEWAY}/api/reloaded/echo")[0] == 404, 3) is None:
        http("POST", f"{ADMIN}/admin/reload", {"Authorization": f"Bearer {TOKEN}"})
    load.expect_no_failure()
    return (f"route /api/reloaded answered {took:.2f} s after the edit (via {how}), generation "
            f"{generation:g} -> {new_generation:g}; the invalid edit was rejected "
            f"(rustygate_config_reloads_total{{result=\"error\"}} +1) and the gateway kept serving; "
            f"{load.counts['ok']} requests meanwhile, 0 failed; the file is restored")


def plugin() -> str:
    """WASM plugins: add-header sets X-RustyGate-Plugin on /api/plugin (not on /api/users);
    require-api-key answers 403 itself without a key (no backend attempt); then, under load,
    plugins/add-header.wasm is replaced by a build that sets another value → the new value is
    served within 5 s without a restart and no request fails; the original file is put back."""
    import shutil
    current = os.path.join(PLUGINS_DIR, "add-header.wasm")
    variant = os.path.join(PLUGINS_DIR, "variants", "add-header-v2.wasm")
    if not (os.path.exists(current) and os.path.exists(variant)):
        raise Fail(f"{current} or {variant} missing: run `make plugins`")

    def plugin_header(path: str) -> str | None:
        status, headers, _ = http("GET", f"{GATEWAY}{path}")
        return headers.get("x-rustygate-plugin") if status == 200 else f"status {status}"

    first = plugin_header("/api/plugin/echo")
    expect(first == "executed", f"/api/plugin: X-RustyGate-Plugin = {first!r}, not 'executed'")
    status, _, body = http("GET", f"{GATEWAY}/api/plugin/echo")
    seen = [v for k, v in json.loads(body)["headers"] if k == "x-rustygate-plugin"]
    expect(seen == ["executed"], f"the backend saw X-RustyGate-Plugin {seen}")
    expect(plugin_header("/api/users/echo") is None, "/api/users (no plugin) got the header too")

    attempts = backend_attempts("users")
    status, _, body = http("GET", f"{GATEWAY}/api/keyed/echo")
    expect(status == 403, f"/api/keyed without a key answered {status}: {body[:200]!r}")
    expect(backend_attempts("users") == attempts, "the refused request reached a backend")
    status, _, _ = http("GET", f"{GATEWAY}/api/keyed/echo", {"x-api-key": LAB_API_KEY})
    expect(status == 200, f"/api/keyed with the lab key answered {status}")

    def serving(value: str, seconds: float) -> float | None:
        return wait_until(lambda: plugin_header("/api/plugin/echo") == value, seconds)

    backup = current + ".demo-orig"
    shutil.copyfile(current, backup)
    try:
        with BackgroundLoad("/api/plugin/echo", ok=lambda st, h: st == 200 and h.get("x-rustygate-plugin")) as load:
            time.sleep(0.5)  # load before the swap
            shutil.copyfile(variant, current + ".demo-tmp")
            os.replace(current + ".demo-tmp", current)
            took = serving("v2", 5)
            expect(took is not None, "the replaced plugin was not served within 5 s")
            time.sleep(0.3)  # load after the swap
    finally:
        os.replace(backup, current)
    back = serving("executed", 5)
    expect(back is not None, "the original plugin did not come back within 5 s")
    load.expect_no_failure()
    calls = gateway_metric("rustygate_plugin_calls_total", plugin="add-header", hook="on_request", outcome="continue")
    refused = gateway_metric("rustygate_plugin_calls_total", plugin="require-api-key", hook="on_request",
                             outcome="respond")
    return (f"X-RustyGate-Plugin: executed on /api/plugin (request and response), none on /api/users; "
            f"/api/keyed without a key -> 403 by the plugin, 0 backend attempts; add-header.wasm replaced -> "
            f"'v2' served after {took:.2f} s, {load.counts['ok']} requests meanwhile, 0 failed; original back after "
            f"{back:.2f} s; rustygate_plugin_calls_total: add-header continue {calls:g}, require-api-key respond "
            f"{refused:g}")


def https() -> str:
    """HTTPS with the lab CA, by curl (a client from outside the project): HTTP/2 and HTTP/1.1
    negotiated by ALPN, the backend told `X-Forwarded-Proto: https`, an untrusting client
    refused the certificate."""
    ca = os.environ.get("LAB_CA", os.path.join(os.path.dirname(__file__), "..", "compose", "certs", "ca.pem"))
    url = os.environ.get("GATEWAY_HTTPS_URL", "https://localhost:8443").rstrip("/") + "/api/test/echo"
    if not os.path.isfile(ca):
        raise Skip(f"no lab CA at {ca} (make lab-certs)")
    seen = []
    for flag, want in (("--http2", "2"), ("--http1.1", "1.1")):
        try:
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", ca, flag, "-w", "\n%{http_version}", url],
                                 capture_output=True, text=True, timeout=20)
        except FileNotFoundError:
            raise Skip("curl is not installed") from None
        expect(out.returncode == 0, f"curl {flag} {url}: {out.stderr.strip()}")
        body, version = out.stdout.rsplit("\n", 1)
        expect(version == want, f"curl {flag}: HTTP/{version}, expected HTTP/{want}")
        echo = json.loads(body)
        proto = [v for k, v in echo.get("headers", []) if k.lower() == "x-forwarded-proto"]
        expect(proto == ["https"], f"curl {flag}: the backend saw X-Forwarded-Proto {proto}")
        seen.append(f"HTTP/{version}")
    untrusted = subprocess.run(["curl", "-sS", "--max-time", "10", url], capture_output=True, text=True, timeout=20)
    expect(untrusted.returncode != 0, "a client without the lab CA accepted the certificate")
    return (f"{url}: {' and '.join(seen)} by ALPN with the lab CA, the backend saw X-Forwarded-Proto: https; "
            f"without the CA curl refused it (exit {untrusted.returncode})")


def mtls() -> str:
    """mTLS on the lab's HTTPS listener (client certificates asked for, optional): /api/mtls
    refuses a client without the lab client CA's certificate (403 client_cert_required) and
    forwards the identity of one that has it; forged identity headers never pass."""
    certs = os.path.dirname(os.environ.get("LAB_CA", os.path.join(os.path.dirname(__file__), "..", "compose", "certs", "ca.pem")))
    ca, cert, key = (os.path.join(certs, f) for f in ("ca.pem", "client.pem", "client.key"))
    base = os.environ.get("GATEWAY_HTTPS_URL", "https://localhost:8443").rstrip("/")
    if not all(os.path.isfile(f) for f in (ca, cert, key)):
        raise Skip(f"no lab client certificate in {certs} (make lab-certs)")

    def curl(*args: str) -> tuple[int, str]:
        try:
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", ca, "-w", "\n%{http_code}", *args],
                                 capture_output=True, text=True, timeout=20)
        except FileNotFoundError:
            raise Skip("curl is not installed") from None
        expect(out.returncode == 0, f"curl {' '.join(args)}: {out.stderr.strip()}")
        body, code = out.stdout.rsplit("\n", 1)
        return int(code), body

    code, body = curl("-H", "X-Client-Cert-Subject: CN=admin", f"{base}/api/mtls/echo")
    expect(code == 403 and json.loads(body).get("error") == "client_cert_required",
           f"no client certificate -> {code} {body[:120]}")
    code, body = curl("--cert", cert, "--key", key, "-H", "X-Client-Cert-Subject: CN=admin", f"{base}/api/mtls/echo")
    expect(code == 200, f"with the lab client certificate -> {code} {body[:120]}")
    seen = {k.lower(): v for k, v in json.loads(body).get("headers", [])}
    subject, san, fp = (seen.get(f"x-client-cert-{h}") for h in ("subject", "san", "sha256"))
    expect(subject == "CN=lab-client" and san == "URI:spiffe://lab/client" and fp and len(fp) == 64,
           f"the backend saw subject {subject!r}, SAN {san!r}, SHA-256 {fp!r}")
    status, _, body = http("GET", f"{GATEWAY}/api/test/echo", headers={"X-Client-Cert-Subject": "CN=admin"})
    forged = {k.lower(): v for k, v in json.loads(body).get("headers", [])}.get("x-client-cert-subject")
    expect(status == 200 and forged is None, f"plain HTTP with a forged identity: the backend saw {forged!r}")
    return (f"/api/mtls without a client certificate -> 403 client_cert_required; with the lab's -> 200, "
            f"backend saw X-Client-Cert-Subject {subject}, SAN {san}, SHA-256 {fp[:12]}…; forged copies dropped")


def https_backend() -> str:
    """TLS to a backend: /api/tls-backend goes to mock backend 4 over https://, its certificate
    verified against the lab CA (upstream tls.ca_file); no TLS error counted."""
    status, _, body = http("GET", f"{GATEWAY}/api/tls-backend/echo")
    expect(status == 200, f"GET /api/tls-backend/echo -> {status} {body[:160]!r}")
    echo = json.loads(body)
    expect(echo.get("backend") == "backend4", f"answered by {echo.get('backend')!r}, expected backend4")
    errors = gateway_metric("rustygate_upstream_tls_errors_total", upstream="tls-backend")
    expect(not errors, f"rustygate_upstream_tls_errors_total{{upstream=tls-backend}} = {errors}")
    up = gateway_metric("rustygate_backend_up", upstream="tls-backend")
    return (f"/api/tls-backend -> backend4 over https:// (certificate verified against the lab CA); "
            f"rustygate_backend_up {up:g} (health checks over TLS), TLS errors {errors or 0:g}")


def cert_rotation() -> str:
    """The lab gateway's certificate replaced under HTTPS load (a new key and certificate from
    the lab CA, each file renamed over the old one, key first): every request succeeds, and new
    handshakes get the new certificate within 3 s."""
    import hashlib
    import http.client
    import ssl
    import tempfile
    certs = os.path.dirname(os.environ.get("LAB_CA", os.path.join(os.path.dirname(__file__), "..", "compose", "certs", "ca.pem")))
    names = ("ca.pem", "ca.key", "gateway.pem", "gateway.key")
    if not all(os.path.isfile(os.path.join(certs, n)) for n in names):
        raise Skip(f"no lab CA key and gateway certificate in {certs} (make lab-certs)")
    base = os.environ.get("GATEWAY_HTTPS_URL", "https://localhost:8443").rstrip("/")
    host, port = base.split("://", 1)[1].split(":")
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    seen: dict[str, int] = {}
    counts = {"ok": 0, "failed": 0}
    lock, stop = threading.Lock(), threading.Event()

    def one() -> str:
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
        try:
            conn.request("GET", "/api/test/echo")
            resp = conn.getresponse()
            resp.read()
            der = conn.sock.getpeercert(binary_form=True)
            return hashlib.sha256(der).hexdigest() if resp.status == 200 else ""
        finally:
            conn.close()

    def load() -> None:
        while not stop.is_set():
            try:
                fp = one()
            except (OSError, http.client.HTTPException):
                fp = ""
            with lock:
                if fp:
                    counts["ok"] += 1
                    seen[fp] = seen.get(fp, 0) + 1
                else:
                    counts["failed"] += 1
            time.sleep(0.01)

    before = one()
    expect(bool(before), "the HTTPS listener does not answer /api/test/echo")
    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)  # load before the swap
        with tempfile.TemporaryDirectory() as tmp:
            ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            _openssl(tmp, "req", *ec, "-keyout", "gateway.key", "-out", "gateway.csr", "-subj", "/CN=rustygate lab gateway")
            with open(os.path.join(tmp, "gateway.ext"), "w") as f:
                f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:gateway,DNS:*.lab.test\n"
                        "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
            _openssl(tmp, "x509", "-req", "-in", "gateway.csr", "-CA", os.path.join(certs, "ca.pem"), "-CAkey",
                     os.path.join(certs, "ca.key"), "-CAcreateserial", "-out", "gateway.pem", "-days", "30",
                     "-extfile", "gateway.ext")
            with open(os.path.join(tmp, "gateway.pem"), "rb") as f:
                new = hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read().decode())).hexdigest()
            for n in ("gateway.key", "gateway.pem"):
                os.chmod(os.path.join(tmp, n), 0o644)  # the compose gateway runs unprivileged
                staged = os.path.join(certs, n + ".new")  # same file system: the rename is atomic
                with open(os.path.join(tmp, n), "rb") as src, open(staged, "wb") as dst:
                    dst.write(src.read())
                os.replace(staged, os.path.join(certs, n))
        took = wait_until(lambda: seen.get(new, 0) > 0, 3)
        time.sleep(0.5)  # load after the swap
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=15)
    expect(took is not None, f"the new certificate was not served within 3 s (seen: {len(seen)} certificates)")
    expect(counts["failed"] == 0, f"{counts['failed']} HTTPS requests failed of {counts['ok'] + counts['failed']}")
    return (f"gateway.key and gateway.pem replaced under load: new handshakes got the new certificate "
            f"{took:.2f} s after the swap; {counts['ok']} HTTPS requests on new connections, 0 failed; "
            f"SHA-256 {before[:12]}… -> {new[:12]}…")


def _openssl(workdir: str, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True, timeout=30)


def acme() -> str:
    """Automatic certificates against Pebble (Let's Encrypt's ACME test server) on loopback: a
    throwaway gateway with server.tls.acme is issued a certificate by TLS-ALPN-01, and curl,
    trusting only Pebble's root, reaches the lab through it by name (curl -> ACME gateway ->
    the lab's gateway -> a backend)."""
    import shutil
    import ssl
    import urllib.request
    pebble = shutil.which("pebble")
    if not pebble:
        raise Skip("Pebble is not installed (apt-get install pebble)")
    binary = os.environ.get("RUSTYGATE_BIN") or next(
        (b for b in (default_bin("rustygate", "debug"), default_bin("rustygate", "release")) if os.path.isfile(b)), None)
    if not binary:
        raise Skip("no rustygate binary to run the ACME gateway (cargo build, or RUSTYGATE_BIN)")
    with Supervisor() as sup:
        work = str(sup.workdir)
        # Pebble's own HTTPS: a throwaway CA and a leaf for localhost.
        ca, pebble_cert, pebble_key = ca_signed(sup.workdir, "pebble")
        http_port, tls_port, admin_port, acme_port, mgmt_port = pick_ports(5)
        with open(os.path.join(work, "pebble.json"), "w") as f:
            json.dump({"pebble": {
                "listenAddress": f"127.0.0.1:{acme_port}", "managementListenAddress": f"127.0.0.1:{mgmt_port}",
                "certificate": str(pebble_cert), "privateKey": str(pebble_key),
                "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "",
                "externalAccountBindingRequired": False}}, f)
        sup.start("pebble", [pebble, "-config", os.path.join(work, "pebble.json")],
                  env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"})
        pebble_ctx = ssl.create_default_context(cafile=str(ca))

        def pebble_up() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{acme_port}/dir", context=pebble_ctx, timeout=2) as r:
                return r.status == 200
        expect(wait_until(pebble_up, 15, interval=0.2, retry_on=(OSError,)) is not None, "Pebble did not start")
        config = (f"server:\n  listen: \"127.0.0.1:{http_port}\"\n  tls:\n    listen: \"127.0.0.1:{tls_port}\"\n"
                  f"    acme:\n      directory: \"https://127.0.0.1:{acme_port}/dir\"\n      domains: [localhost]\n"
                  f"      state_dir: {json.dumps(os.path.join(work, 'acme'))}\n      challenge: tls-alpn-01\n"
                  f"      directory_ca_file: {json.dumps(str(ca))}\n"
                  f"admin: {{ listen: \"127.0.0.1:{admin_port}\", token: demo }}\n"
                  f"log: {{ level: \"warn,rustygate=info\", access_log: false }}\n"
                  f"routes:\n  - {{ path: /, backend: \"{GATEWAY}\" }}\n")
        with open(os.path.join(work, "gateway.yaml"), "w") as f:
            f.write(config)
        gw = sup.start("acme-gateway", [binary, "--config", os.path.join(work, "gateway.yaml")])
        gw.wait_for_line(r"rustygate listening", 15)

        def acme_served() -> dict | None:
            status, _, body = http("GET", f"http://127.0.0.1:{admin_port}/admin/certificates",
                                   headers={"Authorization": "Bearer demo"})
            certs = json.loads(body).get("certificates", []) if status == 200 else []
            return next((c for c in certs if c.get("source") == "acme"), None)
        took = wait_until(acme_served, 30, interval=0.2, retry_on=(OSError, ValueError))
        expect(took is not None, f"no ACME certificate within 30 s:\n{gw.log_tail()}")
        served = acme_served()
        with urllib.request.urlopen(f"https://127.0.0.1:{mgmt_port}/roots/0", context=pebble_ctx, timeout=5) as r:
            root = r.read()
        with open(os.path.join(work, "pebble-root.pem"), "wb") as f:
            f.write(root)
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", os.path.join(work, "pebble-root.pem"),
                              "--resolve", f"localhost:{tls_port}:127.0.0.1", "-w", "\n%{http_code}",
                              f"https://localhost:{tls_port}/api/test/echo"], capture_output=True, text=True, timeout=20)
        expect(out.returncode == 0, f"curl through the ACME certificate: {out.stderr.strip()}")
        code = out.stdout.rsplit("\n", 1)[1]
        expect(code == "200", f"curl through the ACME certificate -> {code}")
        issued = read_metric(f"http://127.0.0.1:{admin_port}/metrics", "rustygate_acme_orders_total",
                             {"result": "issued"})
        return (f"certificate for localhost issued by {served['issuer']!r} after {took:.1f} s (TLS-ALPN-01), "
                f"expires {served['not_after']}; curl trusting only Pebble's root -> 200 through it; "
                f"rustygate_acme_orders_total{{result=issued}} {issued or 0:g}")


def websocket() -> str:
    """WebSocket through the gateway: three sessions on /ws (round-robin over the users
    backends' /ws/echo) echo a message each; the gauge shows them open, then closed."""
    try:
        import asyncio

        import websockets
    except ImportError:
        raise Skip("the Python 'websockets' package is not installed (pip install websockets)") from None
    url = GATEWAY.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws/echo"
    closed_before = gateway_metric("rustygate_websocket_connections_total", route="ws", result="closed")
    seen: dict = {}

    async def run() -> None:
        sessions = [await websockets.connect(url, open_timeout=10) for _ in range(3)]
        try:
            for i, ws in enumerate(sessions):
                await ws.send(f"hello {i}")
                seen[i] = await asyncio.wait_for(ws.recv(), 10)
            seen["backends"] = sorted({ws.response.headers.get("x-backend", "?") for ws in sessions})
            seen["open"] = gateway_metric("rustygate_websocket_connections", route="ws")
        finally:
            for ws in sessions:
                await ws.close()

    asyncio.run(run())
    expect(all(seen[i] == f"hello {i}" for i in range(3)), f"echoes: {seen}")
    expect(seen["open"] == 3, f"rustygate_websocket_connections{{route=ws}} = {seen['open']} while 3 were open")
    closed = wait_until(
        lambda: gateway_metric("rustygate_websocket_connections_total", route="ws", result="closed") >= closed_before + 3,
        10,
    )
    expect(closed is not None, "the 3 sessions were not counted closed within 10 s")
    now_open = gateway_metric("rustygate_websocket_connections", route="ws")
    expect(now_open == 0, f"rustygate_websocket_connections{{route=ws}} = {now_open} after closing")
    print(f"     look: Grafana 'WebSocket sessions' panel; Prometheus "
          f"sum by (result) (rustygate_websocket_connections_total{{route=\"ws\"}}); "
          f"the access log lines with status 101 (written at close, with the session's duration)", flush=True)
    return (f"3 sessions echoed through /ws (backends {', '.join(seen['backends'])}); "
            f"rustygate_websocket_connections{{route=ws}} 3 while open, {now_open:g} after; closed +3")


SCENARIOS = {
    "routing": routing,
    "request-id": request_id,
    "metrics-in-prometheus": metrics_in_prometheus,
    "auth-401": auth_401,
    "hostile-input": hostile_input,
    "rate-limit-429": rate_limit_429,
    "cors-preflight": cors_preflight,
    "failover": failover,
    "slow-backend": slow_backend,
    "trace": trace,
    "reload": reload,
    "plugin": plugin,
    "https": https,
    "mtls": mtls,
    "https-backend": https_backend,
    "cert-rotation": cert_rotation,
    "acme": acme,
    "websocket": websocket,
}


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    try:
        http("GET", f"{ADMIN}/healthz", timeout=3)
    except OSError as e:
        print(f"demo: the gateway's admin {ADMIN} does not answer ({e}); start the lab with 'make up'", file=sys.stderr)
        return 2
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for name in names:
        try:
            verdict, evidence = "PASS", SCENARIOS[name]()
        except Skip as e:
            verdict, evidence = "SKIP", str(e)
        except Fail as e:
            verdict, evidence = "FAIL", str(e)
        except Exception as e:  # a crash in a scenario is a failure with its cause
            verdict, evidence = "FAIL", f"{type(e).__name__}: {e}"
        counts[verdict] += 1
        print(f"{verdict:4} {name}: {evidence}", flush=True)
    print(f"demo: {counts['PASS']} pass, {counts['FAIL']} fail, {counts['SKIP']} skip")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
