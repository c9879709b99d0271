"""Metrics: the Prometheus text format the gateway's /metrics serves, and Prometheus' query API."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import NamedTuple

from .http import http_get, http_post

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class Sample(NamedTuple):
    """One sample line: name, labels and value."""
    name: str
    labels: dict
    value: float


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (comments and malformed lines skipped)."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or line.startswith("#"):
            continue
        labels = {k: re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group(0)], v)
                  for k, v in _LABEL.findall(m.group(2) or "")}
        try:
            out.append(Sample(m.group(1), labels, float(m.group(3))))
        except ValueError:
            continue
    return out


def metric_sum(text: str, name: str, labels: dict | None = None) -> float | None:
    """The sum of the samples of metric `name` whose labels include `labels`; None if none."""
    want = labels or {}
    values = [s.value for s in parse(text)
              if s.name == name and all(s.labels.get(k) == str(v) for k, v in want.items())]
    return sum(values) if values else None


def read_metric(url: str, name: str, labels: dict | None = None, timeout: float = 5.0) -> float | None:
    """metric_sum over what GET `url` (a /metrics endpoint) answers."""
    return metric_sum(http_get(url, timeout=timeout).body.decode(errors="replace"), name, labels)


class Prometheus:
    """Prometheus' HTTP API at `base` (http://HOST:PORT)."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def api(self, path: str, params: dict[str, str] | None = None, timeout: float = 10.0) -> dict:
        """POSTs `params` (form-encoded) to `path`, GETs it without; the decoded JSON answer, or
        {"status": "error", ...} when the answer is not JSON."""
        if params:
            r = http_post(self.base + path, urllib.parse.urlencode(params).encode(),
                          {"Content-Type": "application/x-www-form-urlencoded"}, timeout=timeout)
        else:
            r = http_get(self.base + path, timeout=timeout)
        try:
            return json.loads(r.body)
        except ValueError:
            return {"status": "error", "error": f"HTTP {r.status}: {r.body[:200]!r}"}

    def query(self, expr: str) -> dict:
        """An instant query at the current time."""
        return self.api("/api/v1/query", {"query": expr, "time": f"{time.time():.3f}"})

    def scalar(self, expr: str) -> float | None:
        """The value of a query that yields a scalar or one series; None if it yields nothing."""
        r = self.query(expr)
        if r.get("status") != "success" or not r["data"]["result"]:
            return None
        res = r["data"]["result"]
        value = res[1] if r["data"]["resultType"] == "scalar" else res[0]["value"][1]
        return float(value)
