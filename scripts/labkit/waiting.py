"""Polling with a deadline, so that a check waits for a condition rather than a fixed time.

The probe is called at least once and once more when the deadline comes, so a condition that
holds in time is never reported as late; how long one probe call may block is the probe's own
business (give HTTP probes a timeout shorter than the wait).
"""

from __future__ import annotations

import http.client
import time
from typing import Any, Callable

from .base import SetupError

# What a probe of a service that is not up yet raises: connection refused or reset, a
# half-written answer, a body that does not parse yet.
PROBE_ERRORS = (OSError, http.client.HTTPException, ValueError)


def _poll(probe: Callable[[], Any], timeout: float, interval: float,
          retry_on: tuple) -> tuple[Any, float, BaseException | None]:
    """(first truthy value or None, seconds waited, last exception swallowed)."""
    start = time.monotonic()
    deadline = start + timeout
    last = None
    while True:
        try:
            value = probe()
        except retry_on as e:
            value, last = None, e
        now = time.monotonic()
        if value:
            return value, now - start, last
        if now >= deadline:
            return None, now - start, last
        time.sleep(min(interval, deadline - now))


def wait_until(probe: Callable[[], Any], timeout: float, *, interval: float = 0.05,
               retry_on: tuple = ()) -> float | None:
    """Calls `probe` every `interval` s until it returns a truthy value: the seconds that took,
    or None when `timeout` s passed first. Exceptions in `retry_on` count as "not yet"; any
    other exception ends the wait."""
    value, waited, _ = _poll(probe, timeout, interval, retry_on)
    return waited if value else None


def wait_for(what: str, probe: Callable[[], Any], timeout: float, *, interval: float = 0.05,
             retry_on: tuple = PROBE_ERRORS) -> Any:
    """Like wait_until, for setup: returns the probe's first truthy value, or raises
    SetupError("<what> not ready after N s (last: <the last probe error>)")."""
    value, _, last = _poll(probe, timeout, interval, retry_on)
    if not value:
        raise SetupError(f"{what} not ready after {timeout:g} s"
                         + (f" (last: {type(last).__name__}: {last})" if last else ""))
    return value
