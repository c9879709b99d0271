"""Starting the children of a check and waiting until they serve.

Our own binaries are started on port 0 and tell what they bound: the gateway logs
`rustygate listening` with `proxy=[ADDR, ...] admin=[ADDR, ...]` (an info event of the
`rustygate` target: the config's log.level must let it through, e.g. "warn,rustygate=info"),
the mock backend prints `mock-backend "NAME" listening on http://ADDR`. No port number is
chosen for them, so none can be taken by another process in between.

Third-party children that cannot report (NGINX, Prometheus, the OTLP sink) get ports picked by
binding, and start_on_picked_ports starts them again on other ports, a bounded number of times,
when one was taken before the child could bind it.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from .base import SetupError, log
from .http import http_get
from .ports import Addr, parse_addr, pick_ports
from .procs import Child, Supervisor
from .waiting import wait_for

GATEWAY_LISTENING = r"rustygate listening"
MOCK_LISTENING = r"listening on https?://(\S+)"
# How a child says its port was taken (Rust's io::Error, Go's and NGINX's messages).
_ADDR_IN_USE = re.compile(r"(?i)address already in use|os error 98|EADDRINUSE")


def gateway_log_level(level: str = "warn") -> str:
    """A gateway `log.level` as quiet as `level` that still logs the `rustygate listening`
    line start_gateway reads (an info event of the `rustygate` target, logged once)."""
    return f"{level},rustygate=info"


def wait_http(child: Child, url: str, timeout: float = 30.0, status: int = 200) -> float:
    """Polls GET `url` until it answers `status`, failing at once if `child` exits. Returns
    the seconds waited; SetupError with the child's log after `timeout` s."""
    answers: list[str] = []

    def probe() -> bool:
        child.require_alive()
        got = http_get(url, timeout=1.0).status
        answers.append(f"HTTP {got}")
        return got == status

    t0 = time.monotonic()
    try:
        wait_for(f"{child.name} on {url}", probe, timeout)
    except SetupError as e:
        if not child.alive():
            raise
        last = f" (last answer {answers[-1]})" if answers else ""
        raise SetupError(f"{e}{last}; its output (tail):\n{child.log_tail()}") from None
    child.pids()  # remember the process tree (NGINX workers) for the cleanup
    return time.monotonic() - t0


def _addresses(line: str, key: str) -> list[Addr]:
    """The addresses of `key=[A, B]` (pretty format) or `"key":"[A, B]"` (JSON) in a log line;
    IPv6 addresses print as [::1]:PORT, hence the bracket counting."""
    m = re.search(rf'\b{key}"?\s*[=:]\s*"?\[', line)
    if not m:
        return []
    depth, i = 1, m.end()
    while i < len(line) and depth:
        depth += {"[": 1, "]": -1}.get(line[i], 0)
        i += 1
    return [parse_addr(a) for a in line[m.end():i - 1].split(",") if a.strip()]


def start_gateway(sup: Supervisor, binary: str, config, name: str = "gateway",
                  timeout: float = 30.0, env: dict | None = None, wrapper: list[str] | None = None) -> Child:
    """Starts the gateway with `config` and waits for its `rustygate listening` line and its
    admin /healthz. The child's addr["proxy"] and addr["admin"] are the first addresses it
    reports for each listener. `wrapper` goes before the command (e.g. valgrind and its
    options)."""
    deadline = time.monotonic() + timeout
    child = sup.start(name, [*(wrapper or []), binary, "--config", str(config)], env=env)
    try:
        m = child.wait_for_line(GATEWAY_LISTENING, timeout)
    except SetupError as e:
        raise SetupError(f"{e}\n(the harness reads the bound addresses from that info line: the "
                         f"config's log.level must let it through, e.g. \"warn,rustygate=info\")") from None
    line = m.string
    for role in ("proxy", "admin"):
        found = _addresses(line, role)
        if not found:
            raise SetupError(f"{name}: no {role} address in its line {line.strip()!r}")
        child.addr[role] = found[0]
    wait_http(child, child.addr["admin"].url + "/healthz", timeout=max(1.0, deadline - time.monotonic()))
    return child


def start_mock_backend(sup: Supervisor, binary: str, name: str = "backend", label: str | None = None,
                       workers: int = 1, port: int = 0, timeout: float = 30.0,
                       tls: tuple | None = None) -> Child:
    """Starts mock-backend (`--name label`, default `name`) on `port` (0: the OS picks) and
    waits for the address it prints and its /health. The child's addr["http"] is that address.
    With `tls` (certificate, key) it serves HTTPS: then only its listening line is waited for."""
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--name", label or name, "--workers", str(workers)]
    if tls:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    child = sup.start(name, argv)
    child.addr["http"] = parse_addr(child.wait_for_line(MOCK_LISTENING, timeout).group(1))
    if not tls:
        wait_http(child, child.addr["http"].url + "/health", timeout=timeout)
    return child


def start_on_picked_ports(sup: Supervisor, name: str, argv: Callable[[list[int]], list[str]],
                          ready: Callable[[Child, list[int]], None], nports: int = 1,
                          ports: list[int] | None = None, attempts: int = 3) -> tuple[Child, list[int]]:
    """For a child that cannot report its port: picks `nports` ports (or uses `ports`, given by
    the user: then one attempt), starts `argv(ports)` and calls `ready(child, ports)`, which
    raises SetupError when the child does not come up. When the child's log (or that error)
    says the address was in use, the child is stopped and started again on new ports, at most
    `attempts` times in all. Returns the child and its ports."""
    for attempt in range(1, attempts + 1):
        chosen = list(ports) if ports else pick_ports(nports)
        child = sup.start(name, argv(chosen))
        try:
            ready(child, chosen)
            return child, chosen
        except SetupError as e:
            lost_race = bool(_ADDR_IN_USE.search(child.log_text() + str(e)))
            if ports or not lost_race or attempt == attempts:
                raise
            sup.stop(child)
            log(f"{name}: port(s) {chosen} were taken before it could bind; new ports ({attempt}/{attempts})")
    raise AssertionError("unreachable")
