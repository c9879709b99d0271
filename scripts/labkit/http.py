"""HTTP/1.1 requests to the lab's services, with timeouts.

http.client rather than urllib: no proxy from the environment and no redirects get between a
check and the loopback service it talks to, and an error status is an answer, not an exception.
"""

from __future__ import annotations

import http.client
from typing import NamedTuple
from urllib.parse import urlsplit


class Response(NamedTuple):
    """An answer; unpacks as (status, headers, body). `headers` is case-insensitive."""
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request(method: str, url: str, headers: dict | None = None, body: bytes | None = None,
            timeout: float = 10.0) -> Response:
    """One request on a fresh connection. Raises OSError (refused, reset, timed out) or
    http.client.HTTPException (not an HTTP answer); any status is returned."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def http_get(url: str, headers: dict | None = None, timeout: float = 10.0) -> Response:
    """GET `url`; see request()."""
    return request("GET", url, headers=headers, timeout=timeout)


def http_post(url: str, body: bytes = b"", headers: dict | None = None, timeout: float = 10.0) -> Response:
    """POST `body` to `url`; see request()."""
    return request("POST", url, headers=headers, body=body, timeout=timeout)
