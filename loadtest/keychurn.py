#!/usr/bin/env python3
"""RustyGate rate-limiter memory under key churn: how much memory do 1,000,000 keys take, and
is it given back once they are evicted?

  1. starts the gateway (release build, 1 worker) with one route limited per `X-Api-Key`
     (100 requests a minute: a key with one request is stale after 0.6 s) whose backend is a
     closed port, so every admitted request is a quick 502 and the limiter is the only state
     that grows;
  2. records the baseline VmRSS, then drives --keys distinct keys with wrk
     (wrk/distinct_keys.lua: one new key per request), sampling VmRSS every 0.5 s and the
     gateway's request count, and stops wrk (SIGINT: it still reports) once the gateway has
     answered --keys requests. A run shorter than the eviction period (60 s) holds every key
     at once at its end: the peak is the memory of --keys live keys;
  3. waits for the policy's eviction timer (every minute for a 1-minute window): its first tick
     after the load sets the gauge `rustygate_rate_limit_keys{policy="churn"}` to the keys held
     (then evicts them, as they refilled 0.6 s after their one request); the next tick shows what
     was left. VmRSS is read then (idle), and again after 3 s of ordinary traffic (one key):
     the allocator (mimalloc) gives freed pages back to the OS lazily, when the threads that
     own them allocate again, so an idle gateway keeps its peak until traffic resumes.

Prints keys, rate, baseline / peak / after-eviction RSS and bytes per key at the peak.
Exit status: 0 = the gauge came back under --max-left keys and RSS after eviction is within
--max-growth-mib of the baseline; 1 = not; 2 = setup problem.

    python3 loadtest/keychurn.py                 # 1,000,000 keys (about 40 s + one minute)
    python3 loadtest/keychurn.py --keys 100000 --profile debug
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

CONFIG = """# written by loadtest/keychurn.py
server: {{ listen: "127.0.0.1:{port}", workers: {workers} }}
admin: {{ listen: "127.0.0.1:{admin}" }}
log: {{ level: error, access_log: false }}
rate_limits:
  churn: {{ requests: 100, window: 1m, key: "header:X-Api-Key" }}
routes:
  - {{ name: churn, path: /, backend: "http://127.0.0.1:{closed}", rate_limit: churn }}
"""


def gateway_metric(admin: int, prefix: str) -> float | None:
    """The sum of the samples whose line starts with `prefix` on the gateway's /metrics."""
    try:
        status, _, body = H.http_get("127.0.0.1", admin, "/metrics", timeout=5)
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines() if line.startswith(prefix)]
    return sum(values) if values else None


def keys_gauge(admin: int) -> float | None:
    return gateway_metric(admin, 'rustygate_rate_limit_keys{policy="churn"}')


def answered(admin: int) -> float:
    return gateway_metric(admin, "rustygate_requests_total{") or 0.0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_binary_args(ap)
    ap.add_argument("--wrk-bin", default=None)
    ap.add_argument("--keys", type=int, default=1_000_000, help="distinct keys to send (default 1000000)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--max-seconds", type=float, default=300, help="bound on the load phase (default 300)")
    ap.add_argument("--eviction-wait", type=float, default=65,
                    help="seconds per eviction tick to wait for (two ticks; default 65: one period + 5 s)")
    ap.add_argument("--max-left", type=float, default=1000, help="keys the gauge may still hold (default 1000)")
    ap.add_argument("--max-growth-mib", type=float, default=32.0,
                    help="fail if RSS after eviction exceeds the baseline by more (default 32)")
    ap.add_argument("--closed-port", type=int, default=18099, help="a port nothing listens on (the 502 backend)")
    H.add_single_gateway_args(ap)
    return ap.parse_args(argv)


def run(args) -> int:
    H.resolve_binaries(args)
    wrk_bin = H.require_wrk(args.wrk_bin)
    for p in (args.gateway_port, args.admin_port, args.closed_port):
        H.check_port_free(p)
    with H.Supervisor(keep_workdir=args.keep_workdir) as sup:
        cfg = sup.workdir / "gateway.yaml"
        cfg.write_text(CONFIG.format(port=args.gateway_port, admin=args.admin_port, workers=args.gateway_workers,
                                     closed=args.closed_port))
        gw = H.start_gateway(sup, args.gateway_bin, cfg, args.gateway_port, args.admin_port,
                             timeout=args.startup_timeout)
        time.sleep(1.0)
        baseline = H.rss_kib(gw.pids())
        H.log(f"baseline VmRSS {H.fmt_mib(baseline)}; sending {args.keys:,} distinct keys")

        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - t0, H.rss_kib(gw.pids())))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        per_thread = -(-args.keys // args.threads)
        argv = H.wrk_argv(wrk_bin, f"http://127.0.0.1:{args.gateway_port}/", args.max_seconds,
                          args.connections, args.threads, script=H.WRK_DIR / "distinct_keys.lua")
        started = time.monotonic()
        run = H.start_wrk(argv + ["--", str(per_thread)], sup.workdir)
        # wrk waits out its -d even when every thread has stopped: stop it once the gateway has
        # answered all the keys (SIGINT makes wrk print its report).
        # wrk's threads stop after their share; a request in flight at that moment may never be
        # answered, so the load is over when the count stops moving.
        last, last_change = -1.0, time.monotonic()
        while run.popen.poll() is None and time.monotonic() - started < args.max_seconds:
            count = answered(args.admin_port)
            if count != last:
                last, last_change = count, time.monotonic()
            elif count > 0 and time.monotonic() - last_change > 1.0:
                break
            if count >= args.keys:
                break
            time.sleep(0.2)
        load_s = last_change - started
        if run.popen.poll() is None:
            run.popen.send_signal(signal.SIGINT)
        result = run.wait()
        stop.set()
        sampler.join()
        keys = int(answered(args.admin_port))  # each answered request had its own key
        peak = max(rss for _, rss in samples)
        hwm = H.hwm_kib(gw.pids())
        refused = result["errors"].get("non_2xx_3xx", 0)
        H.log(f"{keys:,} keys in {load_s:.1f} s ({keys / load_s:,.0f}/s); peak VmRSS {H.fmt_mib(peak)}, "
              f"VmHWM {H.fmt_mib(hwm)}; answers other than the expected 502: {keys - refused:,}")
        if not gw.alive():
            raise H.HarnessError(f"gateway exited during the load; its output:\n{gw.log_tail()}")
        held, left, deadline = None, None, time.monotonic() + 2 * args.eviction_wait
        while time.monotonic() < deadline:
            value = keys_gauge(args.admin_port)
            if held is None and value is not None and value >= 0.5 * keys:
                held = value  # the first tick after the load: every key was held
            elif held is not None and value is not None and value <= args.max_left:
                left = value
                break
            time.sleep(1)
        waited = time.monotonic() - started - load_s
        time.sleep(2)
        idle = H.rss_kib(gw.pids())
        H.run_wrk(H.wrk_argv(wrk_bin, f"http://127.0.0.1:{args.gateway_port}/", 3, 8, 1,
                             headers=["X-Api-Key: one"]), sup.workdir)
        time.sleep(1)
        after = H.rss_kib(gw.pids())

    per_key = (max(peak, hwm) - baseline) * 1024 / keys if keys else 0
    growth_mib = (after - baseline) / 1024
    ok = held is not None and left is not None and growth_mib <= args.max_growth_mib
    md = "\n".join([
        f"## Rate-limit key churn — {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        f"`python3 loadtest/keychurn.py --keys {args.keys}` (gateway {args.gateway_workers} worker, "
        f"wrk -t{args.threads} -c{args.connections}, policy 100/min keyed by `X-Api-Key`).",
        "",
        "| keys | load | rate | baseline RSS | peak RSS | bytes/key at peak | keys left after eviction | "
        "RSS after eviction, idle | then after 3 s of traffic |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {keys:,} | {load_s:.1f} s | {keys / load_s:,.0f}/s | {H.fmt_mib(baseline)} | "
        f"{H.fmt_mib(max(peak, hwm))} | {per_key:,.0f} | {left if left is not None else 'n/a':g} "
        f"({waited:.0f} s after the load) | {H.fmt_mib(idle)} | {H.fmt_mib(after)} ({growth_mib:+.1f} MiB) |",
        "",
        f"The keys gauge read {held if held is not None else 'n/a':g} at the first eviction after the load "
        "(keys held), then the count left above. " + ("The load was shorter than the 60 s eviction period, so every key "
        "was live at the peak." if load_s < 60 else "The load outlasted the 60 s eviction period: the peak "
        "holds only the keys of the last period, not all of them."),
        "",
        f"verdict: {'PASS' if ok else 'FAIL'} (gauge showed the keys held, then <= {args.max_left:g} left; RSS growth <= "
        f"{args.max_growth_mib:g} MiB)",
    ]) + "\n"
    H.publish(args.out_dir, f"keychurn-{time.strftime('%Y%m%d-%H%M%S')}",
              {"keys": keys, "load_seconds": load_s, "baseline_kib": baseline, "peak_kib": max(peak, hwm),
               "idle_after_eviction_kib": idle, "after_kib": after, "keys_held": held, "keys_left": left, "samples": samples, "wrk": result}, md)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(H.cli_main(parse_args, run))
