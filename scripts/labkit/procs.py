"""The one process supervisor of the lab scripts and load tests.

Children run in their own session (a terminal Ctrl-C reaches only the script, which then stops
them in order), with stdout and stderr in one log file each under the supervisor's work
directory. Lines a child prints are awaited by reading that file without blocking, so the
deadline of the wait always fires, and a child that exits ends the wait at once with its log.
Stopping is by PID: SIGTERM, up to `grace` seconds, SIGKILL; descendants that outlive their
parent (NGINX workers) are remembered with their start time and killed by PID too; each
child's exit code is reported.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procfs
from .base import SetupError, log
from .waiting import wait_for, wait_until

# tracing's pretty format colours field names; the log readers match the plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Child:
    """A started process, its log file and what it reported (addresses by role, see services)."""
    name: str
    popen: subprocess.Popen
    log_path: Path
    # (pid -> starttime) of every process seen in this child's tree (e.g. NGINX workers), so
    # that stragglers can be killed by PID without risking a recycled PID.
    known: dict = field(default_factory=dict)
    addr: dict = field(default_factory=dict)
    # Where this child's output starts in its log file (a retried start appends to the file).
    log_from: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """Main PID plus descendants (NGINX master + workers); remembered for the cleanup."""
        if not self.alive():
            return []
        tree = procfs.process_tree(self.pid)
        for p in tree:
            st = procfs.start_time(p)
            if st is not None:
                self.known.setdefault(p, st)
        return tree

    def log_text(self) -> str:
        """Everything this child printed so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_from)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 25) -> str:
        """The last `n` lines of the log, indented and prefixed with the child's name."""
        lines = self.log_text().splitlines()[-n:]
        return "\n".join(f"    {self.name}| {line}" for line in lines) or f"    {self.name}| (empty log)"

    def require_alive(self) -> None:
        """SetupError with the log's tail if the child has exited."""
        if not self.alive():
            raise SetupError(f"{self.name} exited with code {self.popen.returncode}; its output (tail):\n"
                             f"{self.log_tail()}")

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        """The first match of `pattern` in a line of the log (ANSI colours removed). SetupError
        if the child exits first or `timeout` s pass."""
        rx = re.compile(pattern)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        state = {"offset": self.log_from, "partial": ""}

        def probe() -> re.Match | None:
            alive = self.alive()  # before reading: a line printed just before exiting counts
            with open(self.log_path, "rb") as f:
                f.seek(state["offset"])
                data = f.read()
            state["offset"] += len(data)
            *lines, state["partial"] = (state["partial"] + decoder.decode(data)).split("\n")
            if not alive:  # the output is complete: an unterminated last line counts too
                lines.append(state["partial"])
            for line in lines:
                m = rx.search(_ANSI.sub("", line))
                if m:
                    return m
            if not alive:
                self.require_alive()
            return None

        try:
            return wait_for(f"{self.name}: a log line matching /{pattern}/", probe, timeout, retry_on=())
        except SetupError as e:
            if not self.alive():
                raise
            raise SetupError(f"{e}; its output (tail):\n{self.log_tail()}") from None


class Supervisor(contextlib.AbstractContextManager):
    """Starts children and guarantees they are stopped, also on an exception, Ctrl-C, SIGTERM
    or SIGHUP (both become KeyboardInterrupt while the `with` block runs)."""

    def __init__(self, workdir: Path | None = None, keep_workdir: bool = False, grace: float = 5.0,
                 prefix: str = "rustygate-lt-"):
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=prefix))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir
        self.grace = grace
        self.children: list[Child] = []
        self._old_handlers: dict = {}

    # -- context management -------------------------------------------------
    def __enter__(self):
        def on_signal(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not in the main thread
                self._old_handlers[sig] = signal.signal(sig, on_signal)
        # Also when started with SIGINT ignored (e.g. `cmd &` from a script): Ctrl-C / kill -INT
        # must still stop the run and clean up.
        with contextlib.suppress(ValueError):
            self._old_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc):
        # Ignore further Ctrl-C while cleaning up so the cleanup itself is not interrupted.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            for sig, old in self._old_handlers.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(sig, old)
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return False

    # -- starting -----------------------------------------------------------
    def start(self, name: str, argv: list[str], env: dict | None = None) -> Child:
        """Starts `argv` (cwd: the work directory) with its output in WORKDIR/<name>.log."""
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as logf:  # append: a retried start keeps the earlier output
            log_from = logf.tell()
            try:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **(env or {})}, cwd=str(self.workdir))
            except OSError as e:
                raise SetupError(f"cannot start {name} ({argv[0]}): {e}") from None
        child = Child(name, popen, log_path, log_from=log_from)
        self.children.append(child)
        log(f"started {name} pid={popen.pid}: {' '.join(map(str, argv))}")
        return child

    def check_alive(self) -> None:
        """SetupError naming the first child that has exited (with its log's tail)."""
        for child in self.children:
            child.require_alive()

    # -- stopping -----------------------------------------------------------
    def stop(self, child: Child) -> int | None:
        """Stops one child (as stop_all does) and forgets it; its exit code."""
        [(name, code)] = self._stop([child])
        with contextlib.suppress(ValueError):
            self.children.remove(child)
        log(f"stopped: {name} {_describe(code)}")
        return code

    def stop_all(self) -> list[tuple[str, int | None]]:
        """SIGTERM to every child still running (the last started first), SIGKILL to those not
        gone after `grace` s, then to leftover descendants. Logs and returns the exit codes."""
        codes = self._stop(list(reversed(self.children)))
        self.children.clear()
        if codes:
            log("stopped: " + ", ".join(f"{name} {_describe(code)}" for name, code in codes))
        return codes

    def _stop(self, children: list[Child]) -> list[tuple[str, int | None]]:
        for child in children:
            if child.alive():
                child.pids()  # refresh the list of descendants before signalling
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in children:
            try:
                child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{child.name} pid={child.pid} did not stop within {self.grace:g} s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    child.popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.popen.wait(timeout=10)
        # Descendants that outlived their parent (e.g. NGINX workers after a SIGKILL'd master).
        for child in children:
            for pid, st in child.known.items():
                if pid != child.pid and wait_until(lambda p=pid, s=st: procfs.start_time(p) != s, self.grace) is None:
                    log(f"{child.name}: descendant pid={pid} still alive: SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        return [(child.name, child.popen.returncode) for child in children]


def _describe(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"
