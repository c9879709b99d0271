"""Shared plumbing for the RustyGate load-test scripts (bench.py, soak.py, stream.py).

Python 3.11 standard library only. Everything here talks to loopback addresses only.

What lives here:
  * locating the binaries (gateway, mock backend, nginx, wrk),
  * a process supervisor that starts children in their own session, logs their
    output to files and always stops them (SIGTERM, then SIGKILL after 5 s),
  * /proc readers: CPU time (utime+stime), VmRSS / VmHWM, child processes,
  * a wrk runner + parser of wrk's text output (``--latency``) and of the JSON
    line printed by ``wrk/report.lua`` / ``wrk/close.lua``,
  * gateway config generation.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRK_DIR = HERE / "wrk"
RESULTS_DIR = HERE / "results"

CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


class HarnessError(RuntimeError):
    """A setup problem the user must fix (missing binary, busy port, startup failure)."""


def log(msg: str) -> None:
    """Progress messages go to stderr so that stdout stays clean (markdown, summaries)."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------

def cargo_target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rustygate-target"


def default_bin(name: str, profile: str = "release") -> str:
    return str(cargo_target_dir() / profile / name)


def require_executable(path: str, what: str, hint: str = "") -> str:
    p = Path(path).expanduser()
    if not p.is_file() or not os.access(p, os.X_OK):
        msg = f"{what} not found or not executable: {p}"
        if hint:
            msg += f" ({hint})"
        raise HarnessError(msg)
    return str(p)


def find_tool(name: str, explicit: str | None = None) -> str | None:
    """Find a system tool; also looks in /usr/sbin, which is not on every user's PATH."""
    if explicit:
        p = Path(explicit).expanduser()
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def add_binary_args(ap, *, gateway: bool = True) -> None:
    """Common --profile/--gateway-bin/--mock-bin flags."""
    ap.add_argument("--profile", choices=("release", "debug"), default="release",
                    help="cargo profile used for the default binary paths "
                         "($CARGO_TARGET_DIR/<profile>/..., CARGO_TARGET_DIR defaults to "
                         "~/.cache/rustygate-target) (default: release)")
    if gateway:
        ap.add_argument("--gateway-bin", default=None,
                        help="rustygate binary (default: $CARGO_TARGET_DIR/<profile>/rustygate)")
    ap.add_argument("--mock-bin", default=None,
                    help="mock-backend binary (default: $CARGO_TARGET_DIR/<profile>/mock-backend)")


def resolve_binaries(args, *, gateway: bool = True) -> None:
    if gateway and not args.gateway_bin:
        args.gateway_bin = default_bin("rustygate", args.profile)
    if not args.mock_bin:
        args.mock_bin = default_bin("mock-backend", args.profile)
    if gateway:
        args.gateway_bin = require_executable(
            args.gateway_bin, "gateway binary",
            f"build it with: cargo build {'--release ' if args.profile == 'release' else ''}-p rustygate")
    args.mock_bin = require_executable(
        args.mock_bin, "mock backend binary",
        f"build it with: cargo build {'--release ' if args.profile == 'release' else ''}-p mock-backends")


# ---------------------------------------------------------------------------
# /proc readers
# ---------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rparen = raw.rfind(")")
    # fields[0] is field 3 (state) of proc(5)
    return raw[rparen + 2:].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime (proc(5) fields 14 and 15) of the whole thread group, in seconds."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    return (int(f[14 - 3]) + int(f[15 - 3])) / CLK_TCK


def start_time(pid: int) -> int | None:
    """Field 22 (starttime); used to make sure a PID was not recycled."""
    f = _stat_fields(pid)
    return None if f is None else int(f[22 - 3])


def parent_pid(pid: int) -> int | None:
    f = _stat_fields(pid)
    return None if f is None else int(f[4 - 3])


def children_of(pid: int) -> list[int]:
    """Direct children: /proc/PID/task/*/children when the kernel has it, else scan /proc."""
    kids: set[int] = set()
    task_dir = Path(f"/proc/{pid}/task")
    have_children_file = False
    try:
        for t in task_dir.iterdir():
            cf = t / "children"
            if cf.exists():
                have_children_file = True
                kids.update(int(x) for x in cf.read_text().split())
    except FileNotFoundError:
        return []
    if not have_children_file:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and parent_pid(int(entry)) == pid:
                kids.add(int(entry))
    return sorted(kids)


def process_tree(pid: int) -> list[int]:
    """pid plus all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children_of(p))
    return out


def proc_status_kib(pid: int, key: str) -> int | None:
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def rss_kib(pids) -> int:
    return sum(proc_status_kib(p, "VmRSS") or 0 for p in pids)


def hwm_kib(pids) -> int:
    return sum(proc_status_kib(p, "VmHWM") or 0 for p in pids)


def tree_cpu_seconds(pids) -> float:
    return sum(cpu_seconds(p) for p in pids)


# ---------------------------------------------------------------------------
# Ports / HTTP helpers
# ---------------------------------------------------------------------------

def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError as e:
        raise HarnessError(f"port {host}:{port} is already in use ({e.strerror}); "
                           f"stop whatever listens there or pick other ports with the --*-port flags")
    finally:
        s.close()


def http_get(host: str, port: int, path: str, timeout: float = 2.0,
             headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def byte_pattern(n: int, offset: int = 0) -> bytes:
    """The mock backend's /bytes/{n} pattern: byte i = i % 251."""
    block = bytes(range(251))
    start = offset % 251
    reps = (start + n) // 251 + 1
    return (block * reps)[start:start + n]


# ---------------------------------------------------------------------------
# Process supervision
# ---------------------------------------------------------------------------

@dataclass
class Managed:
    name: str
    popen: subprocess.Popen
    log_path: Path
    # (pid, starttime) of every process we know belongs to this service (e.g. nginx workers),
    # so that stragglers can be killed by PID without risking a recycled PID.
    known: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """Main PID plus descendants (nginx master + workers); remembered for cleanup."""
        if not self.alive():
            return []
        tree = process_tree(self.pid)
        for p in tree:
            st = start_time(p)
            if st is not None:
                self.known.setdefault(p, st)
        return tree

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:]) or "(empty log)"


class Supervisor(contextlib.AbstractContextManager):
    """Starts services and guarantees they are stopped, including on Ctrl-C / SIGTERM.

    Children run in their own session (so a terminal Ctrl-C reaches only this script,
    which then stops them in order). Stop = SIGTERM, wait up to ``grace`` s, SIGKILL.
    """

    def __init__(self, workdir: Path | None = None, keep_workdir: bool = False, grace: float = 5.0):
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rustygate-lt-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir
        self.grace = grace
        self.services: list[Managed] = []
        self._old_sigterm = None

    # -- context management -------------------------------------------------
    def __enter__(self):
        def on_sigterm(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        self._old_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
        # Also when started with SIGINT ignored (e.g. `cmd &` from a script): Ctrl-C / kill -INT
        # must still stop the run and clean up.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(ValueError):  # not in the main thread
            signal.signal(signal.SIGHUP, on_sigterm)
        return self

    def __exit__(self, *exc):
        # Ignore further Ctrl-C while cleaning up so the cleanup itself is not interrupted.
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGINT, old_int)
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return False

    # -- starting -----------------------------------------------------------
    def start(self, name: str, argv: list[str], env: dict | None = None) -> Managed:
        log_path = self.workdir / f"{name}.log"
        logf = open(log_path, "wb")
        try:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(env or {})}, cwd=str(self.workdir))
        except OSError as e:
            raise HarnessError(f"cannot start {name} ({argv[0]}): {e}")
        finally:
            logf.close()
        m = Managed(name, popen, log_path)
        self.services.append(m)
        log(f"started {name} pid={popen.pid}: {' '.join(argv)}")
        return m

    def wait_http(self, m: Managed, host: str, port: int, path: str, timeout: float = 30.0,
                  want_status: int = 200) -> float:
        """Poll until GET path answers want_status. Returns seconds waited."""
        t0 = time.monotonic()
        last = "no answer"
        while time.monotonic() - t0 < timeout:
            if not m.alive():
                raise HarnessError(f"{m.name} exited with code {m.popen.returncode} during startup; "
                                   f"its output (tail):\n{m.log_tail()}")
            try:
                status, _, _ = http_get(host, port, path, timeout=1.0)
                if status == want_status:
                    m.pids()  # remember the process tree (nginx workers) for cleanup
                    return time.monotonic() - t0
                last = f"HTTP {status}"
            except OSError as e:
                last = str(e) or type(e).__name__
            except http.client.HTTPException as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.05)
        raise HarnessError(f"{m.name} not ready on http://{host}:{port}{path} after {timeout:.0f}s "
                           f"(last: {last}); its output (tail):\n{m.log_tail()}")

    # -- stopping -----------------------------------------------------------
    def stop(self, m: Managed) -> None:
        if m.alive():
            m.pids()  # refresh the list of descendants before signalling
            with contextlib.suppress(ProcessLookupError):
                m.popen.send_signal(signal.SIGTERM)
            try:
                m.popen.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                log(f"{m.name} pid={m.pid} did not stop within {self.grace:.0f}s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    m.popen.kill()
                m.popen.wait(timeout=10)
        # Descendants that outlived their parent (e.g. nginx workers after a SIGKILL'd master).
        for pid, st in list(m.known.items()):
            if pid == m.pid:
                continue
            deadline = time.monotonic() + self.grace
            while start_time(pid) == st and time.monotonic() < deadline:
                time.sleep(0.05)
            if start_time(pid) == st:
                log(f"{m.name}: descendant pid={pid} still alive: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for m in reversed(self.services):
            try:
                self.stop(m)
            except Exception as e:  # keep stopping the others
                log(f"error while stopping {m.name}: {e}")
        self.services.clear()


# ---------------------------------------------------------------------------
# Starting the project's services
# ---------------------------------------------------------------------------

def start_backend(sup: Supervisor, mock_bin: str, port: int, workers: int = 1, name: str = "b1",
                  timeout: float = 30.0) -> Managed:
    check_port_free(port)
    m = sup.start(f"backend-{name}", [mock_bin, "--port", str(port), "--bind", "127.0.0.1",
                                      "--name", name, "--workers", str(workers)])
    sup.wait_http(m, "127.0.0.1", port, "/health", timeout=timeout)
    return m


def gateway_config_text(listen_port: int, admin_port: int, backend_port: int, workers: int = 1,
                        log_level: str = "warn", max_body_size: int | None = None,
                        route_timeout: str | None = None) -> str:
    """The gateway config used by the scripts (see docs/configuration.md for the keys).
    max_body_size (bytes) and route_timeout (e.g. "600s") are only set by stream.py: the defaults
    (10 MiB, 30 s for the backend's response head) are too small for a 1 GiB upload."""
    server = f'listen: "127.0.0.1:{listen_port}", workers: {workers}'
    if max_body_size is not None:
        server += f", max_body_size: {int(max_body_size)}"
    text = (
        "# generated by loadtest/harness.py\n"
        f"server: {{ {server} }}\n"
        f'admin: {{ listen: "127.0.0.1:{admin_port}" }}\n'
        f"log: {{ level: {log_level}, access_log: false }}\n"
        "routes:\n"
        "  - path: /\n"
        f'    backend: "http://127.0.0.1:{backend_port}"\n'
    )
    if route_timeout:
        text += f"    timeout: {route_timeout}\n"
    return text


def nginx_temp_paths(nginx_bin: str, prefix: Path) -> str:
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


def start_gateway(sup: Supervisor, gateway_bin: str, config_path: Path, listen_port: int,
                  admin_port: int, name: str = "gateway", timeout: float = 30.0) -> Managed:
    check_port_free(listen_port)
    check_port_free(admin_port)
    m = sup.start(name, [gateway_bin, "--config", str(config_path)])
    sup.wait_http(m, "127.0.0.1", admin_port, "/healthz", timeout=timeout)
    return m


_LISTEN_RE = re.compile(r"""listen\s*:\s*["']?([0-9.]+|\[[0-9a-fA-F:]+\]|localhost)?:?(\d+)["']?""")


def listen_ports_from_yaml(text: str) -> dict:
    """Tiny scanner for the gateway YAML: finds the `listen:` of the top-level `server` and
    `admin` keys, in flow (`server: { listen: "..." }`) or block style. No YAML dependency."""
    found: dict = {}
    section = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        top = re.match(r"^([A-Za-z_][\w-]*)\s*:(.*)$", line)
        if top:
            section = top.group(1)
            rest = top.group(2)
        else:
            rest = line
        if section in ("server", "admin") and section not in found:
            m = _LISTEN_RE.search(rest)
            if m:
                found[section] = int(m.group(2))
    return found


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------

_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_duration_us(text: str) -> float:
    """'812.00us' / '1.23ms' / '2.00s' / '1.00m' -> microseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unrecognised wrk duration {text!r}")
    return float(m.group(1)) * _UNIT_US[m.group(2)]


def parse_seconds(text: str | float | int) -> float:
    """'10', '10s', '500ms', '2m' -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(f"bad duration {text!r} (use e.g. 10, 10s, 500ms, 2m)")
    return float(m.group(1)) * {None: 1, "s": 1, "ms": 1e-3, "m": 60, "h": 3600}[m.group(2)]


def parse_wrk_output(out: str) -> dict:
    """Parse wrk 4.x text output (with --latency), plus the JSON line of our Lua done()."""
    r: dict = {"requests": 0, "duration_s": None, "rps": 0.0, "latency_us": {},
               "latency_avg_us": None, "latency_max_us": None,
               "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non_2xx_3xx": 0},
               "bytes_read": None}
    m = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        with contextlib.suppress(ValueError):
            r["latency_avg_us"] = parse_duration_us(m.group(1))
            r["latency_max_us"] = parse_duration_us(m.group(3))
    dist = re.search(r"Latency Distribution\s*\n((?:\s*[0-9.]+%\s+\S+\s*\n?)+)", out)
    if dist:
        for pm in re.finditer(r"([0-9.]+)%\s+(\S+)", dist.group(1)):
            with contextlib.suppress(ValueError):
                r["latency_us"][f"p{float(pm.group(1)):g}"] = parse_duration_us(pm.group(2))
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+), ([0-9.]+\w+) read", out, re.M)
    if m:
        r["requests"] = int(m.group(1))
        with contextlib.suppress(ValueError):
            r["duration_s"] = parse_duration_us(m.group(2)) / 1e6
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            r["errors"][k] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["errors"]["non_2xx_3xx"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", out, re.M)
    if m:
        r["rps"] = float(m.group(1))
    # Exact numbers from wrk/report.lua (or close.lua): one line `WRK_JSON {...}`.
    m = re.search(r"^WRK_JSON (\{.*\})\s*$", out, re.M)
    if m:
        try:
            j = json.loads(m.group(1))
        except json.JSONDecodeError:
            j = None
        if j:
            r["lua"] = j
            r["requests"] = int(j["requests"])
            r["duration_s"] = j["duration_us"] / 1e6
            if r["duration_s"] > 0:
                r["rps"] = r["requests"] / r["duration_s"]
            r["bytes_read"] = j.get("bytes")
            for k in ("connect", "read", "write", "timeout"):
                r["errors"][k] = int(j["errors"][k])
            r["errors"]["non_2xx_3xx"] = int(j["errors"]["status"])
            for k, v in j.get("latency", {}).items():
                r["latency_us"][k] = float(v)
    r["error_total"] = sum(r["errors"].values())
    return r


@dataclass
class WrkRun:
    argv: list
    popen: subprocess.Popen
    timeout: float
    started: float
    out_path: Path

    def wait(self) -> dict:
        try:
            self.popen.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise HarnessError(f"wrk did not finish within {self.timeout:.0f}s: {' '.join(self.argv)}")
        finally:
            if self.popen.poll() is None:  # interrupted: do not leave wrk behind
                self.popen.kill()
                self.popen.wait()
        out = self.out_path.read_text(errors="replace")
        with contextlib.suppress(OSError):
            self.out_path.unlink()
        if self.popen.returncode != 0:
            raise HarnessError(f"wrk exited {self.popen.returncode}: {' '.join(self.argv)}\n{out}")
        res = parse_wrk_output(out)
        res["wall_s"] = time.monotonic() - self.started
        res["raw"] = out
        return res


def wrk_argv(wrk_bin: str, url: str, duration_s: float, connections: int, threads: int,
             script: str | Path | None = None, headers: list | None = None,
             timeout_s: float | None = None) -> list:
    argv = [wrk_bin, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency"]
    if timeout_s:
        argv.append(f"--timeout={max(1, round(timeout_s))}s")
    for h in headers or []:
        argv += ["-H", h]
    if script:
        argv += ["-s", str(script)]
    argv.append(url)
    return argv


def start_wrk(argv: list, workdir: Path) -> WrkRun:
    fd, path = tempfile.mkstemp(prefix="wrk-", suffix=".out", dir=str(workdir))
    with os.fdopen(fd, "wb") as f:
        # Same process group as us: a terminal Ctrl-C stops wrk too.
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    dur = 10.0
    for a in argv:
        m = re.fullmatch(r"-d(\d+)s", a)
        if m:
            dur = float(m.group(1))
    return WrkRun(argv, popen, dur + 30.0, time.monotonic(), Path(path))


def run_wrk(argv: list, workdir: Path) -> dict:
    return start_wrk(argv, workdir).wait()


def require_wrk(explicit: str | None = None) -> str:
    w = find_tool("wrk", explicit)
    if not w:
        raise HarnessError("wrk not found: install it with `apt-get install -y wrk` (or pass --wrk-bin)")
    return w


def fmt_mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def parse_size(text: str) -> int:
    """'256MiB', '1GiB', '1G', '100MB', '4096' -> bytes (K/M/G without 'B' are binary)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KkMmGgTt]?)(i?)([Bb]?)\s*", text)
    if not m:
        raise ValueError(f"bad size {text!r} (use e.g. 256MiB, 1GiB, 1048576)")
    num, unit, i, b = m.groups()
    exp = " KMGT".index(unit.upper()) if unit else 0
    base = 1000 if (b and not i and unit) else 1024  # 'MB' is decimal, 'MiB'/'M' binary
    return int(float(num) * base ** exp)


def cli_main(parse_args, run, argv=None) -> int:
    """The shared entry point of the scripts: exit 2 on a setup problem, 130 on Ctrl-C."""
    args = parse_args(argv)
    try:
        return run(args)
    except HarnessError as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted: all started processes were stopped", file=sys.stderr, flush=True)
        return 130


def publish(out_dir: str, name: str, payload: dict, markdown: str) -> Path:
    """Writes a run's JSON (`payload` plus its markdown) to OUT_DIR/NAME.json and prints the
    markdown and where the JSON went."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({**payload, "markdown": markdown}, indent=2))
    print(markdown, flush=True)
    print(f"results: {path}", flush=True)
    return path


def add_single_gateway_args(ap) -> None:
    """The flags of the scripts that run one backend and one gateway (soak, stream)."""
    ap.add_argument("--gateway-workers", type=int, default=1)
    ap.add_argument("--backend-workers", type=int, default=1)
    ap.add_argument("--gateway-config", default=None, help="use this config instead of the generated one")
    ap.add_argument("--backend-port", type=int, default=18001)
    ap.add_argument("--gateway-port", type=int, default=18080)
    ap.add_argument("--admin-port", type=int, default=18081)
    ap.add_argument("--startup-timeout", type=float, default=30.0)
    ap.add_argument("--out-dir", default=str(RESULTS_DIR))
    ap.add_argument("--keep-workdir", action="store_true")
