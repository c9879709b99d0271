#!/usr/bin/env python3
"""Resource bounds under hostile clients (issue 14): what idle keep-alive connections cost.

  1. starts the mock backend and the gateway (1 worker, `server.max_connections` above the
     count), records the gateway's VmRSS;
  2. opens --connections (10,000) TCP connections to the proxy and sends one keep-alive request
     on each (so every connection holds the state of a served request), then leaves them idle;
  3. records VmRSS: (after - before) / connections is the cost of one idle connection;
  4. sends one more request on every connection: all must be answered 200 (none was dropped);
  5. opens max_connections + 1 connections with --limit-check to see the clear refusal (503).

With --tls the connections are made to an HTTPS listener (a certificate made by openssl for
the run), each with a full TLS handshake before its request: the cost of an idle TLS connection
(rustls' state and buffers included).

Exit status 0 when every connection was served twice and the refusal check held; 1 otherwise;
2 on a setup problem.

    python3 loadtest/idle_conns.py                 # release build, 10,000 connections
    python3 loadtest/idle_conns.py --tls --connections 5000
    python3 loadtest/idle_conns.py --profile debug --connections 2000
"""

from __future__ import annotations

import re
import resource
import selectors
import socket
import ssl
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "scripts")]
import harness as H  # noqa: E402
from labkit import procfs  # noqa: E402
from labkit import tls as labkit_tls  # noqa: E402
from labkit.base import log  # noqa: E402
from labkit.binaries import resolve_binaries  # noqa: E402
from labkit.metrics import read_metric  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402
from labkit.waiting import wait_until  # noqa: E402


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def request_all(socks: list[socket.socket], port: int, deadline_s: float) -> tuple[int, dict[str, int]]:
    """One keep-alive GET on every socket, answers read concurrently; returns (200s, other)."""
    req = f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    pending = {}
    for s in socks:
        s.sendall(req)
        pending[s.fileno()] = b""
        sel.register(s, selectors.EVENT_READ)
    ok, other = 0, {}
    deadline = time.monotonic() + deadline_s
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            chunk = s.recv(65536)
            data = pending[s.fileno()] + chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if not chunk or (sep and len(body) >= content_length(head)):
                status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else "none"
                if status == "200":
                    ok += 1
                else:
                    other[status] = other.get(status, 0) + 1
                del pending[s.fileno()]
                sel.unregister(s)
            else:
                pending[s.fileno()] = data
    other["unanswered"] = len(pending)
    sel.close()
    return ok, other


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def run(args) -> int:
    resolve_binaries(args)
    raise_fd_limit(args.connections * 2 + 1024)
    with Supervisor(keep_workdir=args.keep_workdir) as sup:
        max_conns = args.connections + 100
        extra = f"max_connections: {max_conns}, keep_alive: 300s"
        if args.tls:
            cert, key = labkit_tls.self_signed(sup.workdir)
            extra += (f', tls: {{ listen: "127.0.0.1:0", certificates: '
                      f'[ {{ cert_file: "{cert}", key_file: "{key}" }} ] }}')
        _, gw = H.start_single_gateway(sup, args, server_extra=extra)
        port = gw.addr["proxy"].port
        tls_port = None
        if args.tls:
            tls_port = int(re.search(r"tls\W+\[127\.0\.0\.1:(\d+)", gw.log_text()).group(1))
            ctx = ssl.create_default_context(cafile=str(cert))
        time.sleep(1)  # settle before the baseline reading
        before = procfs.rss_kib(gw.pids())
        socks = []
        for _ in range(args.connections):
            if tls_port:
                raw = socket.create_connection(("127.0.0.1", tls_port), timeout=30)
                socks.append(ctx.wrap_socket(raw, server_hostname="localhost"))  # handshake done here
            else:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        ok1, other1 = request_all(socks, port, 60)
        time.sleep(2)  # the connections stay idle: that is the state measured
        after = procfs.rss_kib(gw.pids())
        per_conn = (after - before) * 1024 / max(1, args.connections)
        kind = "TLS" if tls_port else "keep-alive"
        log(f"{args.connections} idle {kind} connections: VmRSS {H.fmt_mib(before)} -> {H.fmt_mib(after)}, "
              f"{per_conn:,.0f} bytes per connection; first round {ok1} x 200, other {other1}")
        ok2, other2 = request_all(socks, port, 60)
        log(f"second round on the same connections: {ok2} x 200, other {other2}")
        # The limit: max_conns are allowed; fill up to it, then one more gets a 503.
        extra = [socket.create_connection(("127.0.0.1", port), timeout=30)
                 for _ in range(max_conns - args.connections)]
        # The gateway counts a connection once it has accepted it: wait until all are counted.
        metrics = gw.addr["admin"].url + "/metrics"
        wait_until(lambda: (read_metric(metrics, "rustygate_connections") or 0) >= max_conns, 10,
                   retry_on=(OSError,))
        over = socket.create_connection(("127.0.0.1", port), timeout=30)
        over.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        over.settimeout(10)
        answer = over.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        log(f"connection {max_conns + 1} (max_connections {max_conns}): {answer!r}")
        for s in socks + extra + [over]:
            s.close()
        passed = (ok1 == ok2 == args.connections) and answer.startswith("HTTP/1.1 503")
        markdown = (
            f"| idle {kind} connections | {args.connections:,} |\n|---|---|\n"
            f"| gateway VmRSS before / after | {H.fmt_mib(before)} / {H.fmt_mib(after)} |\n"
            f"| per idle connection | {per_conn:,.0f} bytes |\n"
            f"| served afterwards | {ok2:,} of {args.connections:,} |\n"
            f"| connection beyond max_connections | `{answer}` |\n")
        H.publish(args.out_dir, "idle_conns-tls" if tls_port else "idle_conns", {"before_kib": before, "after_kib": after,
                                                "per_connection_bytes": per_conn, "served": [ok1, ok2],
                                                "over_limit": answer}, markdown)
        print("PASS" if passed else "FAIL", flush=True)
        return 0 if passed else 1


def parse_args(argv=None):
    ap = H.arg_parser(__doc__)
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--tls", action="store_true", help="connect to an HTTPS listener (a full handshake each)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    sys.exit(H.cli_main(parse_args, run))
