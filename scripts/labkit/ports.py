"""Addresses and ports.

Our own binaries listen on port 0 and report what they bound (see services), so no port number
is ever handed from here to one of them. What is left:

  * closed_port(): a port that refuses connections for as long as the caller holds it (a bound
    socket that never listens), for routes that must fail to connect;
  * pick_ports(): ports picked by binding, for third-party children that cannot report theirs;
    a race is possible (another process takes the port first), which is why the only caller,
    services.start_on_picked_ports, retries on "address already in use".
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Addr:
    """Where to connect to a listener."""
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """http://HOST:PORT (no trailing slash)."""
        return f"http://{self}"


def parse_addr(text: str) -> Addr:
    """'127.0.0.1:8080' or '[::1]:8080' (as Rust's SocketAddr prints) -> Addr. An unspecified
    host (0.0.0.0, ::) becomes the loopback address of its family: that is where to connect."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if not host or not port.isdigit():
        raise ValueError(f"not a host:port address: {text!r}")
    return Addr(host, int(port))


def closed_port(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a free port that never listens: connections to its port are refused
    and no other process can bind that port while the socket stays open. Keep it open as long
    as the port must stay closed (`.getsockname()[1]` is the port); close it afterwards."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s


def pick_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports that were free a moment ago (bound together, then released)."""
    held = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()
