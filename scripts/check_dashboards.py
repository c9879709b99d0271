#!/usr/bin/env python3
"""Check every dashboard query against a real Prometheus that scraped a real gateway.

Starts two mock backends, the gateway (debug build) and Debian's `prometheus` (1 s scrapes,
temporary storage, alerts.yml loaded), all on loopback; drives ~20 s of mixed traffic (2xx,
404 unmatched, backend 500s, a 502 from a route to a closed port, slow /delay requests, 401s
from a JWT route without a token, 429s from a route limited to 5 requests a minute, retries
and ejections on an upstream with one dead backend, a spent retry budget on one whose backends
are all dead, WebSocket sessions); then
evaluates every PromQL target of every dashboard under dashboards/ through /api/v1/query, with
Grafana's variables substituted ($route and other query variables -> ".*",
$__rate_interval / $__interval -> 30s, $__range -> 5m). One line per panel:

    PASS <title>: N series
    EXPECTED-EMPTY <title>              (listed in dashboards/expected-empty.txt)
    FAIL <title>: no data | query error ... | listed in expected-empty.txt but returned data

Exit status: 0 all good; 1 any FAIL (including a panel of expected-empty.txt that now returns
data, or a stale line there); 2 setup problem (missing binary, a process that would not start,
no scrapes). Every process started is stopped (SIGTERM, then SIGKILL) whatever happens.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import re
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
from labkit import services  # noqa: E402
from labkit import tls as labkit_tls  # noqa: E402
from labkit.base import SetupError  # noqa: E402
from labkit.binaries import default_bin, require_tool  # noqa: E402
from labkit.metrics import Prometheus  # noqa: E402
from labkit.ports import closed_port  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402
from labkit.waiting import PROBE_ERRORS, wait_for, wait_until  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Values substituted for Grafana's built-in variables (a Prometheus with 1 s scrapes and
# ~20 s of traffic: 30 s windows hold plenty of samples).
BUILTINS = {
    "__rate_interval": "30s",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__rate_interval_ms": "30000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# ----------------------------------------------------------------------------------------- load

# (weight, method, path): mostly 2xx, some unmatched 404s, backend 500s, a route to a closed
# port (502), and a few slow requests.
TRAFFIC = [
    (30, "GET", "/api/test/echo"),
    (10, "POST", "/api/test/echo"),
    (30, "GET", "/api/users/echo"),
    (8, "GET", "/nope"),
    (4, "GET", "/api/users/status/500"),
    (4, "GET", "/api/broken/anything"),
    (4, "HEAD", "/api/users/echo"),
    (4, "GET", "/api/secure/echo"),
    (4, "GET", "/api/limited/echo"),
    (4, "GET", "/api/flaky/echo"),
    (4, "GET", "/api/doomed/echo"),
    (4, "GET", "/api/plugged/echo"),
]


def drive_load(host: str, port: int, seconds: float, threads: int = 4) -> dict[str, int]:
    counts: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    weights = [w for w, _, _ in TRAFFIC]

    def record(key: str) -> None:
        with lock:
            counts[key] = counts.get(key, 0) + 1

    def one(conn_holder: list, method: str, path: str) -> None:
        body = b'{"hello":"rustygate"}' if method == "POST" else None
        for attempt in range(2):
            if conn_holder[0] is None:
                conn_holder[0] = http.client.HTTPConnection(host, port, timeout=5)
            conn = conn_holder[0]
            try:
                headers = {"Content-Type": "application/json"} if body else {}
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                record(str(resp.status))
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn_holder[0] = None
                return
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn_holder[0] = None
                if attempt == 1:
                    record(f"error:{type(e).__name__}")

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        holder: list = [None]
        while time.monotonic() < stop_at:
            _, method, path = rng.choices(TRAFFIC, weights=weights)[0]
            one(holder, method, path)
            time.sleep(0.01)
        if holder[0] is not None:
            holder[0].close()

    def slow_worker() -> None:
        # a few slow requests: latency buckets above a few ms, in-flight above 0
        holder: list = [None]
        while time.monotonic() < stop_at - 0.5:
            one(holder, "GET", "/api/users/delay/300")
            time.sleep(0.7)
        if holder[0] is not None:
            holder[0].close()

    def websocket_worker() -> None:
        # WebSocket sessions on /ws (a raw client: the standard library has none), each echoing
        # a few messages and held open a moment, so the session gauge is seen above 0.
        while time.monotonic() < stop_at - 1:
            try:
                record(websocket_session(host, port, "/ws/echo", messages=5, hold=0.8))
            except OSError as e:
                record(f"ws-error:{type(e).__name__}")

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    pool.append(threading.Thread(target=slow_worker, daemon=True))
    pool.append(threading.Thread(target=websocket_worker, daemon=True))
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=seconds + 15)
    return counts


def websocket_session(host: str, port: int, path: str, messages: int, hold: float) -> str:
    """One WebSocket session (RFC 6455, by hand): the handshake, `messages` masked text frames
    each read back from the echo, a pause of `hold` s, then the close handshake. Returns
    "ws-closed" or what went wrong."""
    import base64
    import os
    import socket
    import struct

    def frame(opcode: int, payload: bytes) -> bytes:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked

    def read_frame(f) -> tuple[int, bytes]:
        b0, b1 = f.read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", f.read(8))[0]
        return b0 & 0x0F, f.read(n)

    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
        f = sock.makefile("rb")
        status = f.readline().split(b" ")[1:2]
        while f.readline() not in (b"\r\n", b""):
            pass
        if status != [b"101"]:
            return f"ws-status:{status[0].decode() if status else '?'}"
        for i in range(messages):
            sock.sendall(frame(0x1, f"hello {i}".encode()))
            if read_frame(f) != (0x1, f"hello {i}".encode()):
                return "ws-bad-echo"
        time.sleep(hold)
        sock.sendall(frame(0x8, struct.pack("!H", 1000)))
        opcode, _ = read_frame(f)
        return "ws-closed" if opcode == 0x8 else "ws-no-close"


# ----------------------------------------------------------------------------------- dashboards

VAR_RE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
LEFTOVER_RE = re.compile(r"\$\{?\w+|\[\[\w+")
EQ_VAR_RE = re.compile(r'(\w+)\s*(!?=)(?![~=])\s*"\s*(?:\$\{?(\w+)|\[\[(\w+))')


def load_expected_empty(path: Path) -> tuple[dict[str, str], list[str]]:
    entries: dict[str, str] = {}
    problems = []
    if not path.exists():
        return entries, problems
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        title, sep, reason = line.partition("|")
        title, reason = title.strip(), reason.strip()
        if not sep or not title or not reason:
            problems.append(f"{path.name}:{n}: expected '<panel title> | <reason>', got {raw!r}")
            continue
        if title in entries:
            problems.append(f"{path.name}:{n}: {title!r} listed twice")
        entries[title] = reason
    return entries, problems


def walk_panels(panels: list) -> list[dict]:
    out = []
    for p in panels or []:
        out.append(p)
        out.extend(walk_panels(p.get("panels", [])))
    return out


def variable_values(dash: dict) -> tuple[dict[str, str], set[str], list[dict]]:
    """Substitution value for each dashboard variable, the multi-value ones, and query variables."""
    values: dict[str, str] = {}
    multi: set[str] = set()
    queries = []
    for v in dash.get("templating", {}).get("list", []):
        name, kind = v.get("name"), v.get("type")
        if not name:
            continue
        if kind in ("query", "custom"):
            values[name] = v.get("allValue") or ".*"
            if v.get("multi") or v.get("includeAll"):
                multi.add(name)
            if kind == "query":
                queries.append(v)
        elif kind == "constant":
            values[name] = str(v.get("query", ""))
        elif kind == "interval":
            values[name] = "30s"
        elif kind == "textbox":
            cur = (v.get("current") or {}).get("value")
            values[name] = cur if isinstance(cur, str) and cur else ".*"
        elif kind == "datasource":
            values[name] = "prometheus"
    return values, multi, queries


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in values:
            return values[name]
        return m.group(0)
    return VAR_RE.sub(repl, expr)


def is_prometheus(ds, panel_ds) -> bool:
    ds = ds or panel_ds
    if ds is None:
        return True  # the default data source is Prometheus
    if isinstance(ds, str):
        return ds.lower() in ("prometheus", "${datasource}", "$datasource")
    uid, kind = str(ds.get("uid", "")), str(ds.get("type", ""))
    return kind == "prometheus" or uid == "prometheus" or (uid.startswith("$") and kind in ("", "prometheus"))


def count_series(result: dict) -> tuple[int, int]:
    """(series, series with a non-NaN value) of a successful /api/v1/query answer."""
    data = result["data"]
    kind, res = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        return 1, 0 if kind == "scalar" and math.isnan(float(res[1])) else 1
    if kind == "vector":
        return len(res), sum(1 for s in res if not math.isnan(float(s["value"][1])))
    return len(res), sum(1 for s in res if any(not math.isnan(float(v)) for _, v in s["values"]))


class Report:
    def __init__(self) -> None:
        self.counts = {"PASS": 0, "EXPECTED-EMPTY": 0, "FAIL": 0, "SKIP": 0}

    def line(self, verdict: str, text: str) -> None:
        self.counts[verdict] = self.counts.get(verdict, 0) + 1
        print(f"{verdict} {text}", flush=True)


def check_variable(prom: Prometheus, v: dict, report: Report) -> None:
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or v.get("definition", ""))
    q = q.strip()
    m = re.fullmatch(r"label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)", q, re.S)
    if m:
        params = {"match[]": m.group(1)} if m.group(1) else {}
        url = f"/api/v1/label/{m.group(2)}/values"
        r = prom.api(url + ("?" + urllib.parse.urlencode(params) if params else ""))
    elif (m := re.fullmatch(r"query_result\((.+)\)", q, re.S)):
        r = prom.query(m.group(1))
    else:
        report.line("SKIP", f"variable ${v['name']}: query {q!r} not checked")
        return
    if r.get("status") != "success":
        report.line("FAIL", f"variable ${v['name']}: query error {r.get('error')}")
    elif not r["data"] or (isinstance(r["data"], dict) and not r["data"]["result"]):
        report.line("FAIL", f"variable ${v['name']}: no values for {q}")
    else:
        vals = r["data"] if isinstance(r["data"], list) else r["data"]["result"]
        shown = ", ".join(map(str, vals[:6])) if isinstance(r["data"], list) else ""
        report.line("PASS", f"variable ${v['name']}: {len(vals)} values" + (f" ({shown})" if shown else ""))


def check_dashboard(prom: Prometheus, path: Path, expected: dict[str, str], seen: set[str],
                    report: Report) -> None:
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    try:
        dash = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        report.line("FAIL", f"{rel}: not valid JSON: {e}")
        return
    if "dashboard" in dash and "panels" not in dash:
        dash = dash["dashboard"]
    print(f"== {rel}: {dash.get('title', '(untitled)')}")
    values, multi, var_queries = variable_values(dash)
    for v in var_queries:
        check_variable(prom, v, report)

    titles: set[str] = set()
    for panel in walk_panels(dash.get("panels", [])):
        targets = [t for t in panel.get("targets", []) or [] if isinstance(t, dict)]
        if panel.get("type") == "row" or not targets:
            continue
        title = panel.get("title") or f"(untitled panel id {panel.get('id')})"
        if title in titles:
            report.line("FAIL", f"{title}: duplicate panel title in {rel} (expected-empty.txt is keyed by title)")
            continue
        titles.add(title)
        seen.add(title)
        listed = title in expected

        total = valid = 0
        problems: list[str] = []
        evaluated = 0
        for t in targets:
            expr = t.get("expr")
            ref = t.get("refId", "?")
            if not is_prometheus(t.get("datasource"), panel.get("datasource")) or not expr:
                continue
            evaluated += 1
            tag = f"[{ref}] " if len(targets) > 1 else ""
            for m in EQ_VAR_RE.finditer(expr):
                var = m.group(3) or m.group(4)
                if var in multi:
                    problems.append(f"{tag}{m.group(1)}{m.group(2)}\"${var}\": a multi-value variable needs =~ / !~")
            q = substitute(expr, values)
            if (left := LEFTOVER_RE.search(q)):
                problems.append(f"{tag}unresolved variable {left.group(0)} in {q!r}")
                continue
            r = prom.query(q)
            if r.get("status") != "success":
                problems.append(f"{tag}query error: {r.get('errorType', '')}: {r.get('error')} in {q!r}")
                continue
            n, ok = count_series(r)
            total += n
            valid += ok
            if not listed and n == 0:
                problems.append(f"{tag}no data for {q!r}")
            elif not listed and ok == 0:
                problems.append(f"{tag}{n} series, all NaN, for {q!r}")
        if evaluated == 0:
            report.line("SKIP", f"{title}: no Prometheus query")
            continue
        if listed and not problems and total > 0:
            problems.append(f"listed in expected-empty.txt ({expected[title]}) but returned {total} series: "
                            "the feature has landed, delete its line")
        if problems:
            report.line("FAIL", f"{title}: " + "; ".join(problems))
        elif listed:
            report.line("EXPECTED-EMPTY", title)
        else:
            report.line("PASS", f"{title}: {total} series")


def check_rules(prom: Prometheus, report: Report) -> None:
    r = prom.api("/api/v1/rules")
    if r.get("status") != "success":
        report.line("FAIL", f"alert rules: cannot list them: {r.get('error')}")
        return
    rules = [rule for g in r["data"]["groups"] for rule in g["rules"]]
    bad = [f"{rule['name']}: {rule.get('health')} {rule.get('lastError', '')}".strip()
           for rule in rules if rule.get("health") != "ok"]
    if not rules:
        report.line("FAIL", "alert rules: none loaded")
    elif bad:
        report.line("FAIL", "alert rules: " + "; ".join(bad))
    else:
        report.line("PASS", f"alert rules: {len(rules)} rules evaluated without error")
    alerts = prom.api("/api/v1/alerts")
    active = [f"{a['labels'].get('alertname')}{{{','.join(f'{k}={v}' for k, v in sorted(a['labels'].items()) if k not in ('alertname', 'severity', 'service'))}}} {a['state']}"
              for a in alerts.get("data", {}).get("alerts", [])]
    if active:
        print("info: alerts pending/firing after the load (its 500s and 502s are deliberate): "
              + "; ".join(sorted(active)))


# ----------------------------------------------------------------------------------------- main

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gateway-bin", default=default_bin("rustygate", "debug"))
    p.add_argument("--mock-bin", default=default_bin("mock-backend", "debug"))
    p.add_argument("--prometheus-bin", default="prometheus")
    p.add_argument("--dashboards-dir", default=str(REPO / "dashboards"))
    p.add_argument("--expected-empty", default=None, help="default: DASHBOARDS_DIR/expected-empty.txt")
    p.add_argument("--rules", default=str(REPO / "compose/prometheus/alerts.yml"),
                   help="alert rules loaded into the test Prometheus ('' for none)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (logs, TSDB)")
    return p.parse_args()


# The example plugins `make plugins` builds (the plugin panels need one running).
PLUGINS_DIR = Path(__file__).resolve().parent.parent / "plugins"


def gateway_config(b1: str, b2: str, closed_port: int, cert: Path, key: Path) -> str:
    """The gateway's config: backends b1 and b2 (URLs), and routes to `closed_port`, where
    nothing listens; an HTTPS listener with the certificate `cert`. The listeners take ports
    the OS picks (start_gateway reads them)."""
    closed = f"http://127.0.0.1:{closed_port}"
    return f"""# written by scripts/check_dashboards.py
server:
  listen: "127.0.0.1:0"
  workers: 1
  tls: {{ listen: "127.0.0.1:0", certificates: [ {{ cert_file: "{cert}", key_file: "{key}" }} ] }}
admin: {{ listen: "127.0.0.1:0", token: "check-dashboards" }}
log: {{ level: "{services.gateway_log_level('warn')}", access_log: false }}
upstreams:
  users:
    backends: [ {{ url: "{b1}" }}, {{ url: "{b2}" }} ]
  flaky:      # one dead backend: retried, and ejected every few failures
    outlier_detection: {{ consecutive_failures: 3, base_ejection: 1s, max_ejection: 2s }}
    backends: [ {{ url: "{b1}" }}, {{ url: "{closed}" }} ]
  doomed:     # every backend dead: the retry budget runs out
    outlier_detection: {{ consecutive_failures: 0 }}
    backends: [ {{ url: "{closed}" }}, {{ url: "http://localhost:{closed_port}" }} ]
auth:
  jwt: {{ algorithms: [HS256], secret: "check-dashboards-secret-0123456789abcdef" }}
rate_limits:
  five-a-minute: {{ requests: 5, window: 1m }}
routes:
  - {{ name: test, path: /api/test, backend: "{b1}" }}
  - {{ name: users, path: /api/users, upstream: users, strip_prefix: true }}
  - {{ name: broken, path: /api/broken, backend: "{closed}" }}
  - {{ name: secure, path: /api/secure, backend: "{b1}", auth: jwt }}
  - {{ name: limited, path: /api/limited, backend: "{b1}", rate_limit: five-a-minute }}
  - {{ name: flaky, path: /api/flaky, upstream: flaky, strip_prefix: true }}
  - {{ name: doomed, path: /api/doomed, upstream: doomed, strip_prefix: true }}
  - {{ name: plugged, path: /api/plugged, backend: "{b1}", plugins: [add-header] }}
  - {{ name: ws, path: /ws, backend: "{b1}", websocket: true }}
plugins: {{ dir: "{PLUGINS_DIR}", watch: false }}
"""


def prometheus_config(admin: str, rules: str) -> str:
    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "rustygate", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [admin]}]}],
    }
    if rules:
        cfg["rule_files"] = [str(Path(rules).resolve())]
    return json.dumps(cfg, indent=2)  # JSON is YAML


def start_prometheus(sup: Supervisor, prometheus: str, config: Path) -> Prometheus:
    """Prometheus on a picked port (it cannot listen on port 0 and say where): started again on
    another port if that one is taken before it binds."""
    def argv(ports: list[int]) -> list[str]:
        return [prometheus, f"--config.file={config}", f"--storage.tsdb.path={sup.workdir / f'tsdb-{ports[0]}'}",
                f"--web.listen-address=127.0.0.1:{ports[0]}", "--log.level=warn"]

    def ready(child, ports: list[int]) -> None:
        services.wait_http(child, f"http://127.0.0.1:{ports[0]}/-/ready", timeout=20)

    _, (port,) = services.start_on_picked_ports(sup, "prometheus", argv, ready)
    return Prometheus(f"http://127.0.0.1:{port}")


def run(args: argparse.Namespace, sup: Supervisor, closed_port: int) -> int:
    started = time.monotonic()
    gateway = require_tool(args.gateway_bin, "gateway binary", "build it: make build")
    mock = require_tool(args.mock_bin, "mock-backend binary", "build it: make build")
    prometheus = require_tool(args.prometheus_bin, "prometheus", "apt-get install prometheus")
    dash_dir = Path(args.dashboards_dir).resolve()
    dashboards = sorted(dash_dir.rglob("*.json"))
    if not dashboards:
        raise SetupError(f"no dashboards (*.json) under {dash_dir}")
    if args.rules and not Path(args.rules).exists():
        raise SetupError(f"rules file not found: {args.rules}")
    expected_path = Path(args.expected_empty) if args.expected_empty else dash_dir / "expected-empty.txt"
    expected, expected_problems = load_expected_empty(expected_path)

    if not (PLUGINS_DIR / "add-header.wasm").exists():
        raise SetupError(f"{PLUGINS_DIR}/add-header.wasm is missing: run `make plugins`")
    b1, b2 = (services.start_mock_backend(sup, mock, f"backend{i}", label=f"b{i}", timeout=15) for i in (1, 2))
    gw_conf = sup.workdir / "gateway.yaml"
    cert, key = labkit_tls.self_signed(sup.workdir, "gateway", san="DNS:localhost", days=30)
    gw_conf.write_text(gateway_config(b1.addr["http"].url, b2.addr["http"].url, closed_port, cert, key))
    gw = services.start_gateway(sup, gateway, gw_conf, timeout=15)
    prom_conf = sup.workdir / "prometheus.yml"
    prom_conf.write_text(prometheus_config(str(gw.addr["admin"]), args.rules))
    prom = start_prometheus(sup, prometheus, prom_conf)
    wait_for("first scrape of the gateway", lambda: sup.check_alive() or prom.scalar('up{job="rustygate"}') == 1, 15)
    print(f"setup: 2 mock backends, gateway (proxy :{gw.addr['proxy'].port}, admin :{gw.addr['admin'].port}), "
          f"prometheus :{urllib.parse.urlsplit(prom.base).port} ready in {time.monotonic() - started:.1f}s")

    counts = drive_load(gw.addr["proxy"].host, gw.addr["proxy"].port, args.duration)
    sup.check_alive()
    load_end = time.time()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"load: {sum(counts.values())} requests in {args.duration:.0f}s ({summary})")
    if not any(k.startswith("2") for k in counts):
        raise SetupError("the load got no 2xx answer from the gateway\n" + gw.log_tail(15))

    # Prometheus scrapes and evaluates the rules every second: wait until it has scraped the
    # gateway (at least) twice after the load, so the last counts and the rules include it.
    wait_until(lambda: sup.check_alive() or (prom.scalar('timestamp(up{job="rustygate"})') or 0) >= load_end + 1.5,
               15, retry_on=PROBE_ERRORS)
    scrapes = prom.scalar('count_over_time(up{job="rustygate"}[1m])') or 0
    if prom.scalar('up{job="rustygate"}') != 1 or scrapes < 5:
        raise SetupError(f"prometheus did not scrape the gateway (up != 1 or only {scrapes:.0f} scrapes)\n"
                         + "\n".join(c.log_tail(15) for c in sup.children if c.name == "prometheus"))
    print(f"prometheus: {scrapes:.0f} scrapes of the gateway in the last minute")

    report = Report()
    for problem in expected_problems:
        report.line("FAIL", problem)
    if args.rules:
        check_rules(prom, report)
    seen: set[str] = set()
    for path in dashboards:
        check_dashboard(prom, path, expected, seen, report)
    for title in sorted(set(expected) - seen):
        report.line("FAIL", f"{title}: listed in {expected_path.name} but no dashboard has a panel with that title")

    c = report.counts
    print(f"summary: {c['PASS']} PASS, {c['EXPECTED-EMPTY']} EXPECTED-EMPTY, {c['FAIL']} FAIL"
          + (f", {c['SKIP']} SKIP" if c["SKIP"] else "")
          + f" ({time.monotonic() - started:.0f}s)")
    return 1 if c["FAIL"] else 0


def main() -> int:
    args = parse_args()
    # The supervisor stops every child by PID on the way out, also on SIGTERM, SIGHUP or Ctrl-C.
    sup = Supervisor(keep_workdir=args.keep_tmp, prefix="check-dashboards-")
    try:
        # The routes to a dead backend use a port held closed for the whole run.
        with sup, closed_port() as closed:
            return run(args, sup, closed.getsockname()[1])
    except SetupError as e:
        print(f"SETUP ERROR: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_tmp:
            print(f"kept {sup.workdir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
