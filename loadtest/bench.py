#!/usr/bin/env python3
"""RustyGate benchmark driver: gateway vs NGINX vs direct-to-backend, with wrk.

Starts the mock backend, the gateway (plus optional extra gateway variants) and NGINX
(same worker count), then interleaves short wrk runs:

    for round in 1..R:            (target order rotated each round to spread drift)
      for scenario in scenarios:  small = GET /echo, 16k = GET /bytes/16384
        for target in targets:    gateway, nginx, direct, extra gateways...
          wrk -t1 -c64 -d10s --latency URL

For each run it records requests/s, p50/p99 latency, socket errors + non-2xx, the proxy's CPU
time per request (utime+stime from /proc/PID/stat; NGINX = master + workers) and the backend's.
Prints markdown tables of the medians over rounds (plus gateway/nginx ratios) on stdout and
writes every raw run + the medians to loadtest/results/bench-<timestamp>.json.

    python3 loadtest/bench.py                       # full run (release binaries), ~5 min
    python3 loadtest/bench.py --smoke --profile debug   # CI smoke, < 40 s

Python 3.11 stdlib only; loopback only; every wrk run is bounded by -d.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "scripts")]
import harness as H  # noqa: E402
from labkit import nginx, procfs, services  # noqa: E402
from labkit import tls as labkit_tls  # noqa: E402
from labkit.base import SetupError, log  # noqa: E402
from labkit.binaries import find_tool, resolve_binaries, tool_version  # noqa: E402
from labkit.http import http_get  # noqa: E402
from labkit.procs import Child, Supervisor  # noqa: E402

# Scenario registry: add an entry to benchmark another request shape.
#   path:   request path (identical on every target)
#   check:  preflight check of one response body (returns an error string or None)
SCENARIOS = {
    "small": {
        "path": "/echo",
        "desc": "GET /echo (mock backend's ~600 B JSON echo)",
        "check": lambda body: None if body.lstrip().startswith(b"{") else "body is not a JSON object",
    },
    # Over TLS, to the targets that have an HTTPS listener (gateway, nginx): the same echo on a
    # kept-alive connection, and with a new connection (a full handshake) for every request.
    "tls-small": {
        "path": "/echo",
        "desc": "GET /echo over HTTPS, keep-alive (ECDSA P-256 certificate; TLS 1.3)",
        "check": lambda body: None if body.lstrip().startswith(b"{") else "body is not a JSON object",
        "tls": True,
    },
    "tls-new": {
        "path": "/echo",
        "desc": "GET /echo over HTTPS, a new connection and a full handshake per request (wrk close.lua)",
        "check": lambda body: None if body.lstrip().startswith(b"{") else "body is not a JSON object",
        "tls": True,
        "script": "close.lua",
    },
    # Through the proxy to an HTTPS backend (gateway and nginx): TLS to the backend on pooled,
    # verified connections (a throwaway CA both trust), the echo relayed over plain HTTP.
    "tls-backend": {
        "path": "/tls-backend/echo",
        "desc": "GET /echo from an HTTPS backend (pooled, verified TLS connections; ECDSA P-256)",
        "check": lambda body: None if b'"b-tls"' in body else "not the HTTPS backend's echo",
        "backend_tls": True,
    },
    # Cleartext HTTP/2 with prior knowledge (the gateway's `server.h2c`, NGINX's `listen … http2`,
    # the mock backend's own h2c): one connection carrying 64 concurrent streams (h2load).
    "h2": {
        "path": "/echo",
        "desc": "GET /echo over h2c, one connection, 64 concurrent streams (h2load -c1 -m64)",
        "check": lambda body: None if body.lstrip().startswith(b"{") else "body is not a JSON object",
        "h2": True,
    },
    # WebSocket: sessions through the proxy, each sending a small text message and waiting for
    # its echo, then the next (scripts/ws_client.py throughput: Python's `websockets`, so the
    # client bounds the rate and the comparison is at a like offered load). Per message.
    "ws-echo": {
        "path": "/ws/echo",
        "desc": "WebSocket: 64 sessions, each a 32 B text message and its echo in turn "
                "(mock backend's actix-ws echo); one 'request' = one message echoed",
        "check": None,
        "websocket": True,
    },
    "16k": {
        "path": "/bytes/16384",
        "desc": "GET /bytes/16384 (16 KiB body with content-length)",
        "check": lambda body: (None if body == H.byte_pattern(16384)
                               else f"expected the 16384-byte i%251 pattern, got {len(body)} bytes"),
    },
}

DEFAULT_TARGETS = ("gateway", "nginx", "direct")
# Scenarios run unless --scenarios says otherwise (the TLS ones are asked for by `make bench`).
DEFAULT_SCENARIOS = ("small", "16k")


@dataclass
class Target:
    """Something wrk can hit. kind: 'gateway' (rustygate process), 'nginx', 'direct' (no proxy)."""
    name: str
    kind: str
    port: int
    service: Child | None = None
    headers: list = field(default_factory=list)
    config: str | None = None
    # The HTTPS listener's port, for targets that have one (the TLS scenarios).
    tls_port: int | None = None
    # Whether it routes /tls-backend/ to the HTTPS backend (the tls-backend scenario).
    tls_backend: bool = False
    # Whether it relays WebSocket sessions on /ws (the ws-echo scenario).
    websocket: bool = False
    # The port that takes cleartext HTTP/2 with prior knowledge (the h2 scenario), if any.
    h2_port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, scenario: str) -> str | None:
        """The scenario's URL on this target; None for a TLS scenario on a target without TLS."""
        sc = SCENARIOS[scenario]
        if sc.get("backend_tls") and not self.tls_backend:
            return None
        if sc.get("websocket"):
            return f"ws://127.0.0.1:{self.port}{sc['path']}" if self.websocket else None
        if sc.get("h2"):
            return f"http://127.0.0.1:{self.h2_port}{sc['path']}" if self.h2_port else None
        if sc.get("tls"):
            return f"https://127.0.0.1:{self.tls_port}{sc['path']}" if self.tls_port else None
        return self.base_url + sc["path"]

    def proxy_pids(self) -> list[int]:
        return self.service.pids() if self.service else []


# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------

def proxy_location(path: str, upstream: str, extra: str = "") -> str:
    """An NGINX `location` proxying to `upstream` as the template's own does (HTTP/1.1 keep-alive
    upstream, the gateway's forwarding headers, buffering on), with `extra` directives."""
    return f"""        location {path} {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
{extra}            proxy_buffering on;
        }}"""


def start_nginx(sup: Supervisor, nginx_bin: str, args, backend: Child,
                tls: tuple[Path, Path] | None = None,
                tls_backend: tuple[Child, Path] | None = None) -> tuple[Child, int, int | None, int | None]:
    """NGINX from --nginx-template with the gateway's worker count, in front of the backend;
    with `tls` (certificate, key) an HTTPS server too; with `tls_backend` (the HTTPS backend, its
    CA) `location /tls-backend/` to it; for the h2 scenario a cleartext HTTP/2 server. Returns
    the child and its ports (plain, HTTPS, h2c)."""
    h2 = any(SCENARIOS[s].get("h2") for s in args.scenario_list)

    def more_servers(ports: list[int]) -> dict:
        out = {"@H2_SERVER@": ""}
        if h2:
            out["@H2_SERVER@"] = f"""    server {{
        listen 127.0.0.1:{ports[-1]} http2;
{proxy_location("/", "http://rustygate_bench_backend")}
    }}"""
        return out | tls_server(ports)

    def tls_server(ports: list[int]) -> dict:
        if not tls:
            return {"@TLS_SERVER@": ""}
        return {"@TLS_SERVER@": f"""    server {{
        listen 127.0.0.1:{ports[1]} ssl;
        ssl_certificate {tls[0]};
        ssl_certificate_key {tls[1]};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets off;
{proxy_location("/", "http://rustygate_bench_backend")}
    }}"""}
    values = {"@WORKERS@": str(args.nginx_workers), "@BACKEND@": str(backend.addr["http"]),
              "@TLS_BACKEND_UPSTREAM@": "", "@TLS_BACKEND_LOCATION@": "", "@WS_LOCATION@": ""}
    if any(SCENARIOS[s].get("websocket") for s in args.scenario_list):
        values["@WS_LOCATION@"] = """        location /ws/ {
            proxy_pass http://rustygate_bench_backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 300s;
        }"""
    if tls_backend:
        child_b, ca = tls_backend
        values["@TLS_BACKEND_UPSTREAM@"] = f"""
    upstream rustygate_bench_tls_backend {{
        server {child_b.addr["http"]};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
"""
        values["@TLS_BACKEND_LOCATION@"] = proxy_location(
            "/tls-backend/", "https://rustygate_bench_tls_backend/",
            f"            proxy_ssl_verify on;\n            proxy_ssl_trusted_certificate {ca};\n"
            "            proxy_ssl_name localhost;\n            proxy_ssl_server_name on;\n"
            "            proxy_ssl_session_reuse on;\n")
    child, ports = nginx.start_nginx_ports(
        sup, nginx_bin, Path(args.nginx_template),
        values,
        ready_path="/health", port=args.nginx_port, timeout=args.startup_timeout,
        more_ports=more_servers, nports=1 + bool(tls) + h2)
    return child, ports[0], (ports[1] if tls else None), (ports[-1] if h2 else None)


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """The TLS scenarios' certificate: self-signed ECDSA P-256 for 127.0.0.1 (wrk does not
    verify), readable by NGINX's unprivileged workers."""
    return labkit_tls.self_signed(workdir, "bench-tls", san="IP:127.0.0.1")


def setup_extra_gateway(sup: Supervisor, spec: str, args, backend: Child) -> Target:
    """--extra-gateway NAME=CONFIGFILE[,BINARY].

    BINARY (default: --gateway-bin) runs another build of the gateway, e.g. the static musl
    release binary that the image ships. The config may use placeholders @LISTEN@, @ADMIN@
    (host:port), @BACKEND@ (URL) and @WORKERS@ (and @OTLP_GRPC@, the host:port of an OTLP
    receiver started for it; @PLUGINS@, the repository's plugins/ directory that `make plugins`
    fills); @LISTEN@ and @ADMIN@ become 127.0.0.1:0 and the ports the gateway reports are used.
    Without placeholders the file is used as is (the ports are still read from the gateway's
    `rustygate listening` line, so its log.level must let that line through).
    """
    if "=" not in spec:
        raise SetupError(f"--extra-gateway expects NAME=CONFIGFILE, got {spec!r}")
    name, path = spec.split("=", 1)
    path, _, binary = path.partition(",")
    gateway_bin = str(Path(binary).expanduser()) if binary else args.gateway_bin
    if not Path(gateway_bin).is_file():
        raise SetupError(f"--extra-gateway {name}: gateway binary not found: {gateway_bin}")
    name = name.strip()
    if not name or name in DEFAULT_TARGETS:
        raise SetupError(f"--extra-gateway name {name!r} is empty or clashes with a built-in target")
    src = Path(path).expanduser()
    if not src.is_file():
        raise SetupError(f"--extra-gateway {name}: config file not found: {src}")
    text = src.read_text()
    extra = {}
    if "@PLUGINS@" in text:
        plugins = Path(__file__).resolve().parent.parent / "plugins"
        if not (plugins / "add-header.wasm").is_file():
            raise SetupError(f"--extra-gateway {name}: {plugins}/add-header.wasm missing (make plugins)")
        extra["@PLUGINS@"] = str(plugins)
    if "@OTLP_GRPC@" in text:
        extra["@OTLP_GRPC@"] = f"127.0.0.1:{start_otlp_sink(sup, args)}"
    text = H.render_gateway_config(text, backend.addr["http"].url, args.gateway_workers, extra)
    cfg = sup.workdir / f"gateway-{name}.yaml"
    cfg.write_text(text)
    m = services.start_gateway(sup, gateway_bin, cfg, name=f"gateway-{name}", timeout=args.startup_timeout)
    return Target(name, "gateway", m.addr["proxy"].port, m, config=text)


def start_otlp_sink(sup: Supervisor, args) -> int:
    """The OTLP receiver for configs with @OTLP_GRPC@ (mock-backends' otlp-sink, beside the mock
    backend's binary), started once; returns its gRPC port. Its CPU is its own process's, so a
    traced target's CPU per request counts only the gateway's side of exporting. It prints the
    addresses it was given, not the ports bound, hence picked ports (retried if taken)."""
    if getattr(args, "otlp_sink_port", None):
        return args.otlp_sink_port
    sink_bin = Path(args.mock_bin).with_name("otlp-sink")
    if not sink_bin.is_file():
        raise SetupError(f"@OTLP_GRPC@ needs the otlp-sink binary: {sink_bin} not found (make build-release)")
    _, (grpc_port, http_port) = services.start_on_picked_ports(
        sup, "otlp-sink", lambda p: [str(sink_bin), "--grpc", f"127.0.0.1:{p[0]}", "--http", f"127.0.0.1:{p[1]}"],
        lambda child, p: services.wait_http(child, f"http://127.0.0.1:{p[1]}/api/services",
                                            timeout=args.startup_timeout),
        nports=2)
    args.otlp_sink_port = grpc_port
    return grpc_port


def preflight(targets: list[Target], scenarios: list[str]) -> list[str]:
    """One plain request per target and scenario; checks status and body."""
    problems = []
    for t in targets:
        hdrs = dict(h.split(":", 1) for h in t.headers)
        hdrs = {k.strip(): v.strip() for k, v in hdrs.items()}
        for s in scenarios:
            if SCENARIOS[s].get("tls") or SCENARIOS[s].get("websocket"):
                continue  # the load tools' own error counts cover these
            if t.url_for(s) is None:
                continue  # not run on this target
            path = SCENARIOS[s]["path"]
            try:
                status, _, body = http_get(f"{t.base_url}{path}", headers=hdrs, timeout=10)
            except Exception as e:  # noqa: BLE001 - reported, not raised
                problems.append(f"{t.name} {path}: {type(e).__name__}: {e}")
                continue
            if status != 200:
                problems.append(f"{t.name} {path}: HTTP {status}: {body[:200]!r}")
                continue
            err = SCENARIOS[s]["check"](body)
            if err:
                problems.append(f"{t.name} {path}: {err}")
    return problems


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

def cpu_snapshot(pids: list[int]) -> dict:
    return {p: procfs.cpu_seconds(p) for p in pids}


def cpu_delta(before: dict, after_pids: list[int]) -> float:
    """CPU seconds used between the snapshot and now, over processes present at both times
    (processes that appear later, e.g. a respawned nginx worker, count from zero)."""
    total = 0.0
    for p in after_pids:
        now = procfs.cpu_seconds(p)
        total += now - before.get(p, 0.0) if p in before else now
    return max(total, 0.0)


WS_CLIENT = Path(__file__).resolve().parent.parent / "scripts" / "ws_client.py"


def run_ws_client(url: str, duration: float, sessions: int) -> dict:
    """The ws-echo load: scripts/ws_client.py throughput, in wrk's result shape (no latencies)."""
    argv = [sys.executable, str(WS_CLIENT), "throughput", url, "--sessions", str(sessions),
            "--seconds", f"{duration:g}", "--size", "32"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    try:
        report = json.loads(out.stdout)
    except ValueError:
        report = {"messages": 0, "seconds": duration, "per_second": 0.0}
    errors = 0 if out.returncode == 0 and not report.get("closed_by_server") else 1
    return {"argv": argv, "requests": report["messages"], "rps": report["per_second"],
            "duration_s": report["seconds"], "latency_us": {}, "latency_avg_us": None,
            "errors": {"client": errors} if errors else {}, "error_total": errors, "bytes_read": 0,
            "raw": out.stdout + out.stderr[-2000:]}


def run_h2load(h2load: str, url: str, duration: float) -> dict:
    """The h2 load: h2load over one connection with 64 concurrent streams for `duration` s, in
    wrk's result shape (h2load reports a mean, not percentiles)."""
    argv = [h2load, "-c", "1", "-m", "64", "-t", "1", "-D", f"{max(1, round(duration))}", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout
    rps = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", text)
    status = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    ok = int(counts.group(1)) if counts else 0
    errors = sum(int(g) for g in counts.groups()[1:]) if counts else 1
    if status:
        errors += int(status.group(1)) + int(status.group(2))
    scale = {"us": 1, "ms": 1e3, "s": 1e6}
    return {"argv": argv, "requests": ok, "rps": float(rps.group(2)) if rps else 0.0,
            "duration_s": float(rps.group(1)) if rps else duration, "latency_us": {},
            "latency_avg_us": float(mean.group(1)) * scale[mean.group(2)] if mean else None,
            "errors": {"h2load": errors} if errors else {}, "error_total": errors, "bytes_read": 0,
            "raw": text[-3000:] + out.stderr[-1000:]}


def measure(target: Target, scenario: str, args, backend: Child, wrk_bin: str,
            workdir: Path, duration: float) -> dict:
    url = target.url_for(scenario)
    if SCENARIOS[scenario].get("websocket"):
        return measure_with(target, scenario, url, backend, lambda: run_ws_client(url, duration, args.connections))
    if SCENARIOS[scenario].get("h2"):
        return measure_with(target, scenario, url, backend, lambda: run_h2load(args.h2load_bin, url, duration))
    argv = H.wrk_argv(wrk_bin, url, duration, args.connections, args.threads,
                      script=H.WRK_DIR / SCENARIOS[scenario].get("script", "report.lua"), headers=target.headers,
                      timeout_s=args.wrk_timeout)
    return measure_with(target, scenario, url, backend, lambda: H.run_wrk(argv, workdir) | {"argv": argv})


def measure_with(target: Target, scenario: str, url: str, backend: Child, load) -> dict:
    """Runs `load` (wrk, or the WebSocket client) and measures the proxy's and the backend's CPU
    while it runs."""
    proxy_pids = target.proxy_pids()
    backend_pids = backend.pids()
    p0, b0 = cpu_snapshot(proxy_pids), cpu_snapshot(backend_pids)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = load()
    argv = res["argv"]
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proxy_cpu = cpu_delta(p0, target.proxy_pids()) if target.service else None
    backend_cpu = cpu_delta(b0, backend.pids())
    n = res["requests"]
    return {
        "target": target.name, "kind": target.kind, "scenario": scenario, "url": url,
        "wrk_argv": argv,
        "requests": n, "rps": res["rps"], "duration_s": res["duration_s"],
        "p50_us": res["latency_us"].get("p50"), "p90_us": res["latency_us"].get("p90"),
        "p99_us": res["latency_us"].get("p99"), "p999_us": res["latency_us"].get("p99.9"),
        "latency_us": res["latency_us"], "latency_avg_us": res["latency_avg_us"],
        "errors": res["errors"], "error_total": res["error_total"], "bytes_read": res["bytes_read"],
        "proxy_pids": proxy_pids,
        "proxy_cpu_s": proxy_cpu,
        "proxy_cpu_us_per_req": (proxy_cpu * 1e6 / n) if (proxy_cpu is not None and n) else None,
        "backend_cpu_s": backend_cpu,
        "backend_cpu_us_per_req": (backend_cpu * 1e6 / n) if n else None,
        "wrk_cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        "wrk_output": res["raw"],
    }


def median_or_none(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: list[dict], targets: list[Target], scenarios: list[str]) -> dict:
    med: dict = {}
    for s in scenarios:
        med[s] = {}
        for t in targets:
            rs = [r for r in runs if r["scenario"] == s and r["target"] == t.name]
            if not rs:
                continue
            med[s][t.name] = {
                "rounds": len(rs),
                "rps": median_or_none(r["rps"] for r in rs),
                "p50_us": median_or_none(r["p50_us"] for r in rs),
                "p99_us": median_or_none(r["p99_us"] for r in rs),
                "proxy_cpu_us_per_req": median_or_none(r["proxy_cpu_us_per_req"] for r in rs),
                "backend_cpu_us_per_req": median_or_none(r["backend_cpu_us_per_req"] for r in rs),
                "requests_total": sum(r["requests"] for r in rs),
                "errors_total": sum(r["error_total"] for r in rs),
                "rps_min": min(r["rps"] for r in rs), "rps_max": max(r["rps"] for r in rs),
            }
    return med


def ratio(a, b):
    return (a / b) if (a is not None and b) else None


def ratios(med: dict) -> dict:
    """X/nginx for every proxy target X other than nginx (gateway and the extra gateways)."""
    out: dict = {}
    for s, per in med.items():
        base = per.get("nginx")
        if not base:
            continue
        out[s] = {}
        for name, m in per.items():
            if name in ("nginx", "direct"):
                continue
            out[s][f"{name}/nginx"] = {
                "rps": ratio(m["rps"], base["rps"]),
                "cpu_per_req": ratio(m["proxy_cpu_us_per_req"], base["proxy_cpu_us_per_req"]),
                "p99": ratio(m["p99_us"], base["p99_us"]),
            }
    return out


def efficiencies(med: dict, targets: list, runs: list[dict]) -> dict:
    """For every extra gateway X: the plain gateway's CPU per request / X's (1.0 = as cheap; the
    policies target's overhead budget is >= 0.85, the dead-collector tracing target's >= 0.91)
    and X's req/s / the plain gateway's.

    Two estimates of the CPU efficiency: the ratio of the medians, and the median over rounds of
    the ratio within each round. The second pairs runs made minutes apart at most, so a slow
    drift of the machine (neighbours, thermal) cancels out; on this shared box it is the steadier
    of the two."""
    out: dict = {}
    extras = [t.name for t in targets if t.kind == "gateway" and t.name != "gateway"]
    cpu = {(r["scenario"], r["target"], r["round"]): r["proxy_cpu_us_per_req"] for r in runs}
    for s, per in med.items():
        base = per.get("gateway")
        if not base:
            continue
        out[s] = {}
        for name in extras:
            m = per.get(name)
            if m:
                paired = [ratio(cpu.get((s, "gateway", rnd)), cpu.get((s, name, rnd)))
                          for rnd in sorted({r["round"] for r in runs})]
                out[s][name] = {
                    "cpu_efficiency": ratio(base["proxy_cpu_us_per_req"], m["proxy_cpu_us_per_req"]),
                    "cpu_efficiency_paired": median_or_none(paired),
                    "rps": ratio(m["rps"], base["rps"]),
                }
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def fmt_lat(us) -> str:
    if us is None:
        return "n/a"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.0f} µs"


def fmt_num(x, nd=1) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def fmt_ratio(x) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


def markdown(meta: dict, med: dict, rat: dict, mem: dict, eff: dict | None = None) -> str:
    a = meta["args"]
    out = [f"## RustyGate benchmark — {meta['timestamp']}", ""]
    out.append(f"wrk -t{a['threads']} -c{a['connections']} -d{a['duration_s']:g}s, "
               f"{a['rounds']} round(s), medians over rounds. Workers: gateway {a['gateway_workers']}, "
               f"nginx {a['nginx_workers']}, backend {a['backend_workers']}. "
               f"Host: {meta['host']['cpus']} CPUs, {meta['host']['kernel']}. "
               + (f"Gateway: `{meta['gateway_bin']}`." if meta["gateway_bin"] else "Gateway: not run."))
    for note in meta.get("notes", []):
        out.append("")
        out.append(f"> {note}")
    for s, per in med.items():
        out += ["", f"### `{s}` — {SCENARIOS[s]['desc']}", "",
                "| target | req/s | p50 | p99 | proxy CPU µs/req | backend CPU µs/req | requests | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, m in per.items():
            out.append(f"| {name} | {fmt_num(m['rps'], 0)} | {fmt_lat(m['p50_us'])} | {fmt_lat(m['p99_us'])} | "
                       f"{fmt_num(m['proxy_cpu_us_per_req'])} | {fmt_num(m['backend_cpu_us_per_req'])} | "
                       f"{m['requests_total']:,} | {m['errors_total']:,} |")
        if rat.get(s):
            out += ["", "| ratio | req/s | proxy CPU/req | p99 |", "|---|---:|---:|---:|"]
            for name, r in rat[s].items():
                out.append(f"| {name} | {fmt_ratio(r['rps'])} | {fmt_ratio(r['cpu_per_req'])} | {fmt_ratio(r['p99'])} |")
        if eff and eff.get(s):
            out += ["", "| vs plain gateway | CPU efficiency (gateway CPU/req ÷ this) | same, median of per-round ratios "
                    "| req/s ratio |", "|---|---:|---:|---:|"]
            for name, e in eff[s].items():
                out.append(f"| {name} | {fmt_ratio(e['cpu_efficiency'])} | {fmt_ratio(e['cpu_efficiency_paired'])} "
                           f"| {fmt_ratio(e['rps'])} |")
    if mem:
        out += ["", "### Memory at the end", "", "| process | pids | VmRSS | VmHWM |", "|---|---:|---:|---:|"]
        for name, m in mem.items():
            out.append(f"| {name} | {len(m['pids'])} | {H.fmt_mib(m['rss_kib'])} | {H.fmt_mib(m['hwm_kib'])} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    ap = H.arg_parser(__doc__, wrk=True)
    ap.add_argument("--nginx-bin", default=None, help="nginx binary (default: from PATH or /usr/sbin)")
    ap.add_argument("--nginx-template", default=str(H.HERE / "nginx.conf.tmpl"))
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke: 1 round, 2 s per run, no warm-up; exit 1 only if a target errs")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", default="10s", help="wrk -d per run (default 10s)")
    ap.add_argument("--warmup", default="2s", help="one wrk run per target and scenario before round 1 "
                                                   "(default 2s; 0 to skip; --smoke: 0)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wrk-timeout", default="5s", help="wrk --timeout: slower responses count as errors")
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                    help=f"comma list of {', '.join(SCENARIOS)} (default: {','.join(DEFAULT_SCENARIOS)})")
    ap.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                    help="comma list of built-in targets to run: gateway,nginx,direct (extra gateways are "
                         "always added)")
    ap.add_argument("--extra-gateway", action="append", default=[], metavar="NAME=CONFIGFILE[,BINARY]",
                    help="additional gateway variant run as its own target (repeatable); see README")
    ap.add_argument("--header", action="append", default=[], metavar="TARGET=NAME: VALUE",
                    help="extra request header for one target, e.g. 'jwt=Authorization: Bearer X' (repeatable)")
    ap.add_argument("--nginx-workers", type=int, default=None, help="default: same as --gateway-workers")
    ap.add_argument("--nginx-port", type=int, default=0,
                    help="0 (default): a free port, picked again if taken before NGINX binds it")
    args = ap.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, "2s", "0"
    args.duration_s = H.parse_seconds(args.duration)
    args.warmup_s = H.parse_seconds(args.warmup)
    args.wrk_timeout = H.parse_seconds(args.wrk_timeout)
    if args.nginx_workers is None:
        args.nginx_workers = args.gateway_workers
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.scenario_list:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r} (known: {', '.join(SCENARIOS)})")
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in args.target_list:
        if t not in DEFAULT_TARGETS:
            ap.error(f"unknown target {t!r} (built-in: {', '.join(DEFAULT_TARGETS)}; use --extra-gateway)")
    if args.rounds < 1 or args.duration_s < 1:
        ap.error("--rounds must be >= 1 and --duration >= 1s")
    return args


def run(args) -> int:
    need_gateway = "gateway" in args.target_list or bool(args.extra_gateway)
    resolve_binaries(args, gateway=need_gateway)
    wrk_bin = H.require_wrk(args.wrk_bin)
    nginx_bin = None
    notes = []
    if "nginx" in args.target_list:
        nginx_bin = find_tool("nginx", args.nginx_bin)
        if not nginx_bin:
            print("SKIP nginx: not installed (apt-get install -y nginx-light to compare against NGINX)", flush=True)
            notes.append("SKIP nginx: not installed")
            args.target_list.remove("nginx")
    headers: dict = {}
    for h in args.header:
        if "=" not in h or ":" not in h.split("=", 1)[1]:
            raise SetupError(f"--header expects TARGET=Name: value, got {h!r}")
        t, hv = h.split("=", 1)
        headers.setdefault(t.strip(), []).append(hv.strip())

    ts = time.strftime("%Y%m%d-%H%M%S")
    with Supervisor(keep_workdir=args.keep_workdir) as sup:
        if args.keep_workdir:
            log(f"work dir (kept): {sup.workdir}")
        backend = H.start_backend(sup, args)
        backend_url = backend.addr["http"].url
        targets: list[Target] = []
        tls = make_certificate(sup.workdir) if any(SCENARIOS[s].get("tls") for s in args.scenario_list) else None
        h2 = any(SCENARIOS[s].get("h2") for s in args.scenario_list)
        if h2:
            args.h2load_bin = find_tool("h2load", None)
            if not args.h2load_bin:
                raise SetupError("the h2 scenario needs h2load: apt-get install -y nghttp2-client")
        # The tls-backend scenario's HTTPS backend, with a throwaway CA that both proxies trust.
        tls_backend = None
        if any(SCENARIOS[s].get("backend_tls") for s in args.scenario_list):
            backend_ca, backend_cert, backend_key = labkit_tls.ca_signed(sup.workdir, "bench-backend")
            tls_backend = (services.start_mock_backend(sup, args.mock_bin, "backend-tls", label="b-tls",
                                                       workers=args.backend_workers, timeout=args.startup_timeout,
                                                       tls=(backend_cert, backend_key)), backend_ca)
        if "gateway" in args.target_list:
            if args.gateway_config:
                cfg_text = H.render_gateway_config(Path(args.gateway_config).expanduser().read_text(),
                                                   backend_url, args.gateway_workers)
            else:
                tls_extra = (f'tls: {{ listen: "127.0.0.1:0", certificates: '
                             f'[ {{ cert_file: "{tls[0]}", key_file: "{tls[1]}" }} ] }}' if tls else "")
                if h2:
                    tls_extra = ", ".join(x for x in (tls_extra, "h2c: true") if x)
                cfg_text = H.gateway_config_text(backend_url, args.gateway_port, args.admin_port,
                                                 args.gateway_workers, server_extra=tls_extra)
            websocket = any(SCENARIOS[s].get("websocket") for s in args.scenario_list)
            if websocket and not args.gateway_config:
                cfg_text += f'  - {{ path: /ws, backend: "{backend_url}", websocket: true }}\n'
            if tls_backend and not args.gateway_config:
                cfg_text += (f"  - {{ path: /tls-backend, upstream: tls-backend, strip_prefix: true }}\n"
                             f"upstreams:\n  tls-backend:\n"
                             f"    backends: [ {{ url: \"https://{tls_backend[0].addr['http']}\" }} ]\n"
                             f"    tls: {{ ca_file: \"{tls_backend[1]}\" }}\n")
            cfg = sup.workdir / "gateway.yaml"
            cfg.write_text(cfg_text)
            gw = services.start_gateway(sup, args.gateway_bin, cfg, timeout=args.startup_timeout)
            m = re.search(r"tls\W+\[127\.0\.0\.1:(\d+)", gw.log_text())
            targets.append(Target("gateway", "gateway", gw.addr["proxy"].port, gw, config=cfg_text,
                                  tls_port=int(m.group(1)) if m else None,
                                  tls_backend=bool(tls_backend and not args.gateway_config),
                                  websocket=websocket and not args.gateway_config,
                                  h2_port=gw.addr["proxy"].port if h2 and not args.gateway_config else None))
        if nginx_bin:
            ng, nginx_port, nginx_tls, nginx_h2 = start_nginx(sup, nginx_bin, args, backend, tls, tls_backend)
            targets.append(Target("nginx", "nginx", nginx_port, ng, tls_port=nginx_tls,
                                  tls_backend=tls_backend is not None, websocket=True, h2_port=nginx_h2))
        if "direct" in args.target_list:
            # (No h2 row: the mock backend's own h2c under h2load -m64 is not a reference.)
            targets.append(Target("direct", "direct", backend.addr["http"].port, None, websocket=True))
        for spec in args.extra_gateway:
            targets.append(setup_extra_gateway(sup, spec, args, backend))
        for t in targets:
            t.headers = headers.get(t.name, [])
        unknown = set(headers) - {t.name for t in targets}
        if unknown:
            raise SetupError(f"--header for unknown target(s): {', '.join(sorted(unknown))}")

        def backend_of(scenario: str) -> Child:
            """The backend a scenario's requests reach (its CPU is measured)."""
            return tls_backend[0] if SCENARIOS[scenario].get("backend_tls") and tls_backend else backend

        problems = preflight(targets, args.scenario_list)
        if problems:
            print("FAIL preflight (one plain request per target and scenario):", flush=True)
            for p in problems:
                print(f"  - {p}", flush=True)
            return 1

        if args.warmup_s > 0:
            for s in args.scenario_list:
                for t in targets:
                    if not t.url_for(s):
                        continue
                    log(f"warm-up {t.name} {s} {args.warmup_s:g}s")
                    measure(t, s, args, backend_of(s), wrk_bin, sup.workdir, args.warmup_s)

        runs: list[dict] = []
        total = args.rounds * sum(1 for s in args.scenario_list for t in targets if t.url_for(s))
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            for s in args.scenario_list:
                for t in order:
                    if not t.url_for(s):
                        continue
                    r = measure(t, s, args, backend_of(s), wrk_bin, sup.workdir, args.duration_s)
                    r["round"] = rnd + 1
                    runs.append(r)
                    log(f"[{len(runs)}/{total}] round {rnd + 1} {s:5} {t.name:10} "
                          f"{r['rps']:10,.0f} req/s  p50 {fmt_lat(r['p50_us']):>9}  p99 {fmt_lat(r['p99_us']):>9}  "
                          f"proxy {fmt_num(r['proxy_cpu_us_per_req'])} µs/req  errors {r['error_total']}")

        mem = {}
        for t in targets:
            if t.service:
                pids = t.proxy_pids()
                mem[t.name] = {"pids": pids, "rss_kib": procfs.rss_kib(pids), "hwm_kib": procfs.hwm_kib(pids)}
        bp = backend.pids()
        mem["backend"] = {"pids": bp, "rss_kib": procfs.rss_kib(bp), "hwm_kib": procfs.hwm_kib(bp)}
        logs = {m.name: m.log_tail(10) for m in sup.children}

    med = summarise(runs, targets, args.scenario_list)
    rat = ratios(med)
    eff = efficiencies(med, targets, runs)
    meta = {
        "timestamp": ts,
        "args": {k: v for k, v in vars(args).items() if k not in ("scenario_list", "target_list")}
        | {"duration_s": args.duration_s, "warmup_s": args.warmup_s},
        "gateway_bin": getattr(args, "gateway_bin", None), "mock_bin": args.mock_bin,
        "nginx_bin": nginx_bin, "wrk_bin": wrk_bin,
        "versions": {"wrk": tool_version([wrk_bin, "-v"]),
                     "nginx": tool_version([nginx_bin, "-v"]) if nginx_bin else None,
                     "gateway": tool_version([args.gateway_bin, "--version"]) if need_gateway else None},
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "targets": [{"name": t.name, "kind": t.kind, "url": t.base_url, "headers": t.headers,
                     "config": t.config} for t in targets],
        "notes": notes,
    }
    md = markdown(meta, med, rat, mem, eff)
    H.publish(args.out_dir, f"bench-{ts}{'-smoke' if args.smoke else ''}",
              {"meta": meta, "medians": med, "ratios": rat, "efficiency": eff, "memory": mem, "runs": runs,
               "service_log_tails": logs}, md)

    bad = [f"{r['target']} {r['scenario']} (round {r['round']}): {r['requests']} requests, "
           f"errors {r['errors']}" for r in runs if r["requests"] == 0 or r["error_total"] > 0]
    if bad:
        print("FAIL: some targets did not answer cleanly:", flush=True)
        for b in bad:
            print(f"  - {b}", flush=True)
        return 1
    if args.smoke:
        print(f"SMOKE OK: {', '.join(t.name for t in targets)} answered {', '.join(args.scenario_list)} "
              f"with no errors", flush=True)
    return 0


def main(argv=None) -> int:
    return H.cli_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
