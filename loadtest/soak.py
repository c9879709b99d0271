#!/usr/bin/env python3
"""RustyGate soak / leak check: does the gateway's memory stay flat under connection churn?

  1. starts the mock backend and the gateway (1 worker each by default);
  2. warm-up: keep-alive wrk until --warmup-requests (100k) requests completed, so pools,
     allocator arenas and lazily-built state reach their steady size;
  3. waits --settle (2 s), records the gateway's VmRSS (the baseline);
  4. drives --requests (1,000,000) more requests WITH CONNECTION CHURN: in bounded chunks it
     runs two wrk at once, one on keep-alive connections and one whose requests all carry
     `Connection: close` (wrk/close.lua), so every one of those requests is a new TCP
     connection accepted, served and torn down by the gateway; chunks repeat until the sum
     of completed requests reaches --requests (each chunk is bounded by wrk -d; the whole
     phase by --max-seconds);
  5. waits --settle again, records VmRSS and VmHWM, prints warm-up RSS, final RSS, the delta,
     requests done and errors.

Exit status: 0 = pass; 1 = RSS grew more than --max-growth-mib (default 5), or the error rate
exceeded --max-error-rate, or fewer than --requests requests were done within --max-seconds;
2 = setup problem.

    python3 loadtest/soak.py                              # release build, 1M requests
    python3 loadtest/soak.py --profile debug --requests 100000
"""

from __future__ import annotations

import math
import socket
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "scripts")]
import harness as H  # noqa: E402
from labkit import procfs  # noqa: E402
from labkit.base import SetupError, log  # noqa: E402
from labkit.binaries import resolve_binaries  # noqa: E402
from labkit.procs import Child, Supervisor  # noqa: E402


def churn_probe(port: int, path: str) -> tuple[bool, str]:
    """Send one request with `Connection: close` on a raw socket; the gateway must answer and
    then close the connection (otherwise the 'churn' wrk would silently reuse connections)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            chunk = s.recv(65536)
            if not chunk:
                head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
                status = head.split("\r\n", 1)[0]
                if " 200 " not in status + " ":
                    return False, f"answered {status!r}"
                return True, f"{status}; connection closed by the server"
            data += chunk
        return False, "server kept the connection open for 10 s after `Connection: close`"
    except socket.timeout:
        return False, "server kept the connection open after answering a `Connection: close` request"
    finally:
        s.close()


def drive(args, wrk_bin: str, workdir: Path, target: int, churn: bool, gw: Child, phase: str) -> dict:
    """Run wrk chunks until `target` requests completed. Returns totals and per-chunk rows."""
    url = f"{gw.addr['proxy'].url}{args.path}"
    done = ka_done = close_done = 0
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non_2xx_3xx": 0}
    chunks = []
    t_start = time.monotonic()
    rate = None
    while done < target:
        elapsed = time.monotonic() - t_start
        if elapsed > args.max_seconds:
            log(f"{phase}: --max-seconds {args.max_seconds:g} reached after {done:,} requests")
            break
        remaining = target - done
        if rate:
            secs = max(1, min(args.chunk_seconds, math.ceil(remaining / rate)))
        else:
            secs = max(1, min(args.chunk_seconds, 3))  # short first chunk to learn the rate
        secs = max(1, min(secs, math.ceil(args.max_seconds - elapsed)))
        runs = [H.start_wrk(H.wrk_argv(wrk_bin, url, secs, args.keepalive_connections, args.threads,
                                       script=H.WRK_DIR / "report.lua", timeout_s=args.wrk_timeout), workdir)]
        if churn and args.close_connections > 0:
            runs.append(H.start_wrk(H.wrk_argv(wrk_bin, url, secs, args.close_connections, args.threads,
                                               script=H.WRK_DIR / "close.lua", timeout_s=args.wrk_timeout),
                                    workdir))
        try:
            results = [r.wait() for r in runs]
        finally:
            for r in runs:  # on Ctrl-C / error: never leave a wrk behind
                if r.popen.poll() is None:
                    r.popen.kill()
                    r.popen.wait()
        n_ka = results[0]["requests"]
        n_close = results[1]["requests"] if len(results) > 1 else 0
        chunk_err = sum(r["error_total"] for r in results)
        for r in results:
            for k, v in r["errors"].items():
                errors[k] += v
        done += n_ka + n_close
        ka_done += n_ka
        close_done += n_close
        wall = max(r["duration_s"] or secs for r in results)
        rate = (n_ka + n_close) / wall if wall else None
        rss = procfs.rss_kib(gw.pids())
        chunks.append({"seconds": secs, "keepalive_requests": n_ka, "close_requests": n_close,
                       "errors": chunk_err, "rss_kib": rss, "done": done})
        log(f"{phase}: chunk {len(chunks):3} {secs:2}s  +{n_ka:,} keep-alive +{n_close:,} close  "
              f"= {done:,}/{target:,}  errors {chunk_err}  gateway VmRSS {H.fmt_mib(rss)}")
        if not gw.alive():
            raise SetupError(f"gateway exited with code {gw.popen.returncode} during {phase}; "
                             f"its output (tail):\n{gw.log_tail()}")
        if n_ka + n_close == 0:
            raise SetupError(f"{phase}: a whole chunk completed no request; wrk said:\n"
                                 + "\n".join(r["raw"] for r in results))
    return {"requests": done, "keepalive_requests": ka_done, "close_requests": close_done,
            "errors": errors, "error_total": sum(errors.values()), "seconds": time.monotonic() - t_start,
            "chunks": chunks}


def parse_args(argv=None):
    ap = H.arg_parser(__doc__, wrk=True)
    ap.add_argument("--requests", type=int, default=1_000_000, help="requests in the churn phase (default 1000000)")
    ap.add_argument("--warmup-requests", type=int, default=100_000)
    ap.add_argument("--max-growth-mib", type=float, default=5.0, help="fail if VmRSS grows more (default 5)")
    ap.add_argument("--max-error-rate", type=float, default=0.01,
                    help="fail if more than this fraction of requests erred (default 0.01)")
    ap.add_argument("--path", default="/echo", help="request path (default /echo)")
    ap.add_argument("--keepalive-connections", type=int, default=32)
    ap.add_argument("--close-connections", type=int, default=16,
                    help="connections of the `Connection: close` wrk (0 = no churn)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads per wrk instance")
    ap.add_argument("--chunk-seconds", type=int, default=10, help="max wrk -d per chunk (default 10)")
    ap.add_argument("--max-seconds", type=float, default=1800, help="time bound per phase (default 1800)")
    ap.add_argument("--wrk-timeout", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=2.0, help="idle seconds before each RSS reading")
    return ap.parse_args(argv)


def run(args) -> int:
    resolve_binaries(args)
    wrk_bin = H.require_wrk(args.wrk_bin)
    ts = time.strftime("%Y%m%d-%H%M%S")
    with Supervisor(keep_workdir=args.keep_workdir) as sup:
        _, gw = H.start_single_gateway(sup, args)
        start_rss = procfs.rss_kib(gw.pids())

        churn_ok, churn_msg = churn_probe(gw.addr["proxy"].port, args.path)
        log(f"churn probe (Connection: close): {'OK' if churn_ok else 'PROBLEM'}: {churn_msg}")

        warm = drive(args, wrk_bin, sup.workdir, args.warmup_requests, churn=False, gw=gw, phase="warm-up")
        time.sleep(args.settle)
        warm_rss = procfs.rss_kib(gw.pids())
        log(f"after warm-up: gateway VmRSS {H.fmt_mib(warm_rss)}")

        soak = drive(args, wrk_bin, sup.workdir, args.requests, churn=True, gw=gw, phase="soak")
        time.sleep(args.settle)
        pids = gw.pids()
        final_rss, final_hwm = procfs.rss_kib(pids), procfs.hwm_kib(pids)
        if not gw.alive():
            raise SetupError(f"gateway died; log:\n{gw.log_tail()}")

    delta_mib = (final_rss - warm_rss) / 1024
    err_rate = soak["error_total"] / soak["requests"] if soak["requests"] else 1.0
    failures = []
    if delta_mib > args.max_growth_mib:
        failures.append(f"gateway VmRSS grew {delta_mib:.2f} MiB > --max-growth-mib {args.max_growth_mib:g}")
    if soak["requests"] < args.requests:
        failures.append(f"only {soak['requests']:,} of {args.requests:,} requests done within "
                        f"--max-seconds {args.max_seconds:g}")
    if err_rate > args.max_error_rate:
        failures.append(f"error rate {err_rate:.4%} > --max-error-rate {args.max_error_rate:.4%} "
                        f"({soak['errors']})")
    if not churn_ok:
        failures.append(f"no connection churn: {churn_msg}")

    rss_series = [c["rss_kib"] for c in soak["chunks"]]
    lines = [
        f"## RustyGate soak — {ts}",
        "",
        f"gateway `{args.gateway_bin}` (workers {args.gateway_workers}), path {args.path}, "
        f"keep-alive wrk -c{args.keepalive_connections} + `Connection: close` wrk -c{args.close_connections}",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| gateway VmRSS at start | {H.fmt_mib(start_rss)} |",
        f"| warm-up requests | {warm['requests']:,} (errors {warm['error_total']}) |",
        f"| VmRSS after warm-up | {H.fmt_mib(warm_rss)} |",
        f"| soak requests | {soak['requests']:,} ({soak['keepalive_requests']:,} keep-alive + "
        f"{soak['close_requests']:,} with Connection: close) in {soak['seconds']:.0f} s |",
        f"| soak errors | {soak['error_total']:,} {soak['errors']} |",
        f"| VmRSS final | {H.fmt_mib(final_rss)} |",
        f"| VmRSS delta | {delta_mib:+.2f} MiB (limit {args.max_growth_mib:g}) |",
        f"| VmHWM final | {H.fmt_mib(final_hwm)} |",
        f"| VmRSS per chunk (MiB) | {' '.join(f'{k / 1024:.1f}' for k in rss_series)} |",
        "",
    ]
    lines.append("FAIL: " + "; ".join(failures) if failures else
                 f"PASS: VmRSS delta {delta_mib:+.2f} MiB <= {args.max_growth_mib:g} MiB after "
                 f"{soak['requests']:,} requests")
    md = "\n".join(lines)
    H.publish(args.out_dir, f"soak-{ts}", {
        "timestamp": ts, "args": vars(args), "start_rss_kib": start_rss, "warm_rss_kib": warm_rss,
        "final_rss_kib": final_rss, "final_hwm_kib": final_hwm, "delta_mib": delta_mib,
        "churn_probe": {"ok": churn_ok, "message": churn_msg},
        "warmup": warm, "soak": soak, "failures": failures}, md)
    return 1 if failures else 0


def main(argv=None) -> int:
    return H.cli_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
