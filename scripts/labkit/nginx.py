"""NGINX as a comparison proxy, from a config template (loadtest/ and scripts/differential/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

from .base import SetupError
from .procs import Child, Supervisor
from .services import start_on_picked_ports, wait_http
from .templates import render


def temp_paths(nginx_bin: str, prefix: Path) -> str:
    """The `*_temp_path` lines that keep NGINX's temp files under `prefix` (a non-root run),
    for the modules this NGINX was built with."""
    try:
        built = subprocess.run([nginx_bin, "-V"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.TimeoutExpired):
        built = ""
    lines = [f"    proxy_temp_path {prefix}/tmp/proxy;"]
    for mod in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{mod}_module" not in built:
            lines.append(f"    {mod}_temp_path {prefix}/tmp/{mod};")
    return "\n".join(lines)


def start_nginx(sup: Supervisor, nginx_bin: str, template: Path, values: dict[str, str],
                ready_path: str = "/", port: int = 0, timeout: float = 15.0) -> tuple[Child, int]:
    """Renders `template` (with `values` plus @PREFIX@, @LISTEN@ and @TEMP_PATHS@) into
    WORKDIR/nginx/nginx.conf, starts NGINX on `port` (0: a picked port, retried if taken) and
    waits until GET `ready_path` answers 200. Returns the child and its port."""
    child, ports = start_nginx_ports(sup, nginx_bin, template, values, ready_path, port, timeout)
    return child, ports[0]


def start_nginx_ports(sup: Supervisor, nginx_bin: str, template: Path, values: dict[str, str],
                      ready_path: str = "/", port: int = 0, timeout: float = 15.0,
                      more_ports: Callable[[list[int]], dict[str, str]] | None = None,
                      nports: int = 1) -> tuple[Child, list[int]]:
    """start_nginx with `nports` picked ports (the first is @LISTEN@, the one checked for
    readiness); `more_ports(ports)` gives the placeholders that use the others."""
    prefix = sup.workdir / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    # When started as root, NGINX workers run as an unprivileged user: they must be able to
    # traverse the prefix to reach the temp dirs (NGINX creates and chowns the leaf dirs itself).
    for d in (sup.workdir, prefix, prefix / "tmp"):
        os.chmod(d, 0o755)
    conf, error_log = prefix / "nginx.conf", prefix / "error.log"
    fixed = {**values, "@PREFIX@": str(prefix), "@TEMP_PATHS@": temp_paths(nginx_bin, prefix)}

    def argv(ports: list[int]) -> list[str]:
        extra = more_ports(ports) if more_ports else {}
        conf.write_text(render(template.read_text(), {**fixed, **extra, "@LISTEN@": f"127.0.0.1:{ports[0]}"},
                               template.name))
        return [nginx_bin, "-p", str(prefix), "-c", str(conf), "-e", str(error_log)]

    def ready(child: Child, ports: list[int]) -> None:
        try:
            wait_http(child, f"http://127.0.0.1:{ports[0]}{ready_path}", timeout=timeout)
        except SetupError as e:
            tail = error_log.read_text(errors="replace")[-2000:] if error_log.exists() else ""
            raise SetupError(f"{e}\nnginx error.log:\n{tail}") from None

    return start_on_picked_ports(sup, "nginx", argv, ready, ports=[port] if port else None, nports=nports)
