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

import signal
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "scripts")]
import harness as H  # noqa: E402
from labkit import procfs, services  # noqa: E402
from labkit.base import SetupError, log  # noqa: E402
from labkit.binaries import resolve_binaries  # noqa: E402
from labkit.metrics import read_metric  # noqa: E402
from labkit.ports import closed_port  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402
from labkit.waiting import wait_until  # noqa: E402

CONFIG = """# written by loadtest/keychurn.py
server: {{ listen: "127.0.0.1:{port}", workers: {workers} }}
admin: {{ listen: "127.0.0.1:{admin}" }}
log: {{ level: "{level}", access_log: false }}
rate_limits:
  churn: {{ requests: 100, window: 1m, key: "header:X-Api-Key" }}
routes:
  - {{ name: churn, path: /, backend: "http://127.0.0.1:{closed}", rate_limit: churn }}
"""


def gateway_metric(admin_url: str, name: str, labels: dict | None = None) -> float | None:
    """The sum of a metric's samples on the gateway's /metrics; None if it has none or the
    gateway does not answer."""
    try:
        return read_metric(admin_url + "/metrics", name, labels)
    except OSError:
        return None


def keys_gauge(admin_url: str) -> float | None:
    return gateway_metric(admin_url, "rustygate_rate_limit_keys", {"policy": "churn"})


def answered(admin_url: str) -> float:
    return gateway_metric(admin_url, "rustygate_requests_total") or 0.0


def parse_args(argv=None):
    ap = H.arg_parser(__doc__, wrk=True)
    ap.add_argument("--keys", type=int, default=1_000_000, help="distinct keys to send (default 1000000)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--max-seconds", type=float, default=300, help="bound on the load phase (default 300)")
    ap.add_argument("--eviction-wait", type=float, default=65,
                    help="seconds per eviction tick to wait for (two ticks; default 65: one period + 5 s)")
    ap.add_argument("--max-left", type=float, default=1000, help="keys the gauge may still hold (default 1000)")
    ap.add_argument("--max-growth-mib", type=float, default=32.0,
                    help="fail if RSS after eviction exceeds the baseline by more (default 32)")
    return ap.parse_args(argv)


def run(args) -> int:
    resolve_binaries(args)
    wrk_bin = H.require_wrk(args.wrk_bin)
    # The 502 backend: a port held closed for the whole run.
    with Supervisor(keep_workdir=args.keep_workdir) as sup, closed_port() as closed:
        cfg = sup.workdir / "gateway.yaml"
        cfg.write_text(CONFIG.format(port=args.gateway_port, admin=args.admin_port, workers=args.gateway_workers,
                                     closed=closed.getsockname()[1], level=services.gateway_log_level("error")))
        gw = services.start_gateway(sup, args.gateway_bin, cfg, timeout=args.startup_timeout)
        url, admin = gw.addr["proxy"].url + "/", gw.addr["admin"].url
        time.sleep(1.0)  # settle before the baseline reading
        baseline = procfs.rss_kib(gw.pids())
        log(f"baseline VmRSS {H.fmt_mib(baseline)}; sending {args.keys:,} distinct keys")

        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - t0, procfs.rss_kib(gw.pids())))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        per_thread = -(-args.keys // args.threads)
        argv = H.wrk_argv(wrk_bin, url, args.max_seconds,
                          args.connections, args.threads, script=H.WRK_DIR / "distinct_keys.lua")
        started = time.monotonic()
        run = H.start_wrk(argv + ["--", str(per_thread)], sup.workdir)
        # wrk waits out its -d even when every thread has stopped: stop it once the gateway has
        # answered all the keys (SIGINT makes wrk print its report).
        # wrk's threads stop after their share; a request in flight at that moment may never be
        # answered, so the load is over when the count stops moving.
        progress = {"count": -1.0, "changed": time.monotonic()}

        def load_over() -> bool:
            count = answered(admin)
            if count != progress["count"]:
                progress.update(count=count, changed=time.monotonic())
            elif count > 0 and time.monotonic() - progress["changed"] > 1.0:
                return True
            return count >= args.keys or run.popen.poll() is not None

        wait_until(load_over, args.max_seconds - (time.monotonic() - started), interval=0.2)
        load_s = progress["changed"] - started
        if run.popen.poll() is None:
            run.popen.send_signal(signal.SIGINT)
        result = run.wait()
        stop.set()
        sampler.join()
        keys = int(answered(admin))  # each answered request had its own key
        peak = max(rss for _, rss in samples)
        hwm = procfs.hwm_kib(gw.pids())
        refused = result["errors"].get("non_2xx_3xx", 0)
        log(f"{keys:,} keys in {load_s:.1f} s ({keys / load_s:,.0f}/s); peak VmRSS {H.fmt_mib(peak)}, "
              f"VmHWM {H.fmt_mib(hwm)}; answers other than the expected 502: {keys - refused:,}")
        if not gw.alive():
            raise SetupError(f"gateway exited during the load; its output:\n{gw.log_tail()}")
        gauge = {"held": None, "left": None}

        def evicted() -> bool:
            value = keys_gauge(admin)
            if gauge["held"] is None and value is not None and value >= 0.5 * keys:
                gauge["held"] = value  # the first tick after the load: every key was held
            elif gauge["held"] is not None and value is not None and value <= args.max_left:
                gauge["left"] = value
                return True
            return False

        wait_until(evicted, 2 * args.eviction_wait, interval=1)
        held, left = gauge["held"], gauge["left"]
        waited = time.monotonic() - started - load_s
        time.sleep(2)  # idle before the reading (the allocator's lazy give-back is measured)
        idle = procfs.rss_kib(gw.pids())
        H.run_wrk(H.wrk_argv(wrk_bin, url, 3, 8, 1, headers=["X-Api-Key: one"]), sup.workdir)
        time.sleep(1)  # settle after the traffic before the reading
        after = procfs.rss_kib(gw.pids())

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
