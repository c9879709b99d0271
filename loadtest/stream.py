#!/usr/bin/env python3
"""RustyGate streaming check: large bodies go through the gateway intact and in bounded memory.

  1. starts the mock backend and the gateway;
  2. UPLOAD: POSTs --size bytes (default 1 GiB) through the gateway as a chunked request
     (http.client with a generator body -> Transfer-Encoding: chunked). The content is
     deterministic (the i % 251 byte pattern, sent in --chunk-size pieces, so consecutive
     chunks differ) and its sha256 is computed while sending. The mock backend hashes what
     it receives; its JSON echo must report the same body_length and body_sha256;
  3. DOWNLOAD: GETs /bytes/<size> through the gateway, hashing while reading, and compares
     length + sha256 with the expected pattern (the first differing offset is reported);
  4. prints throughput for both directions, the gateway's CPU time, its VmRSS sampled during
     each phase and its VmHWM (peak RSS, from /proc/PID/status).

Exit status: 0 = pass; 1 = a mismatch / HTTP error, or gateway VmHWM > --max-hwm-mib
(default 64); 2 = setup problem.

    python3 loadtest/stream.py                       # 1 GiB each way, release build
    python3 loadtest/stream.py --profile debug --size 256MiB
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "scripts")]
import harness as H  # noqa: E402
from labkit import procfs  # noqa: E402
from labkit.binaries import resolve_binaries  # noqa: E402
from labkit.base import log  # noqa: E402
from labkit.procs import Child, Supervisor  # noqa: E402


class RssSampler(threading.Thread):
    """Samples the gateway's VmRSS every `interval` s; peak per named phase."""

    def __init__(self, managed: Child, interval: float = 0.05):
        super().__init__(daemon=True)
        self.managed, self.interval = managed, interval
        self.phase = "idle"
        self.peaks: dict = {}
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            pids = self.managed.pids()
            if pids:
                rss = procfs.rss_kib(pids)
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(timeout=2)


class PatternSource:
    """Yields `size` bytes of the i % 251 pattern in `chunk` pieces, hashing as it goes."""

    def __init__(self, size: int, chunk: int):
        self.size, self.chunk = size, chunk
        self.buf = memoryview(H.byte_pattern(chunk + 251))
        self.sha = hashlib.sha256()
        self.sent = 0

    def __iter__(self):
        while self.sent < self.size:
            n = min(self.chunk, self.size - self.sent)
            off = self.sent % 251
            piece = self.buf[off:off + n]
            self.sha.update(piece)
            self.sent += n
            yield bytes(piece)


def expected_sha256(size: int, chunk: int = 1 << 20) -> str:
    src = PatternSource(size, chunk)
    for _ in src:
        pass
    return src.sha.hexdigest()


def find_key(obj, key):
    """Look up `key` anywhere in a decoded JSON document (the echo's layout is not pinned)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = find_key(v, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = find_key(v, key)
            if found is not None:
                return found
    return None


def upload(args, port: int, size: int) -> dict:
    src = PatternSource(size, args.chunk_size)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=args.timeout)
    t0 = time.monotonic()
    try:
        conn.request("POST", args.upload_path, body=iter(src),
                     headers={"Content-Type": "application/octet-stream"})
        t_sent = time.monotonic()
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    t1 = time.monotonic()
    res = {"status": resp.status, "sent_bytes": src.sent, "sent_sha256": src.sha.hexdigest(),
           "seconds": t1 - t0, "send_seconds": t_sent - t0,
           "mib_per_s": size / MIB / (t1 - t0) if t1 > t0 else None, "problems": []}
    if resp.status != 200:
        res["problems"].append(f"upload: HTTP {resp.status}: {body[:300]!r}")
        return res
    try:
        echo = json.loads(body)
    except json.JSONDecodeError:
        res["problems"].append(f"upload: echo is not JSON: {body[:300]!r}")
        return res
    got_len, got_sha = find_key(echo, "body_length"), find_key(echo, "body_sha256")
    res["echo_body_length"], res["echo_body_sha256"] = got_len, got_sha
    if got_len != size:
        res["problems"].append(f"upload: backend received body_length={got_len}, sent {size}")
    if str(got_sha).lower() != res["sent_sha256"]:
        res["problems"].append(f"upload: backend body_sha256={got_sha}, sent {res['sent_sha256']}")
    return res


def download(args, port: int, size: int, expected_sha: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=args.timeout)
    sha = hashlib.sha256()
    got = 0
    first_diff = None
    ref = memoryview(H.byte_pattern((1 << 20) + 251))
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    t0 = time.monotonic()
    ttfb = None
    try:
        conn.request("GET", f"/bytes/{size}")
        resp = conn.getresponse()
        ttfb = time.monotonic() - t0
        clen = resp.getheader("Content-Length")
        te = resp.getheader("Transfer-Encoding")
        if resp.status != 200:
            body = resp.read(300)
            return {"status": resp.status, "problems": [f"download: HTTP {resp.status}: {body!r}"]}
        while True:
            n = resp.readinto(mv)
            if not n:
                break
            piece = mv[:n]
            sha.update(piece)
            if first_diff is None:
                off = got % 251
                if piece != ref[off:off + n]:
                    exp = ref[off:off + n]
                    first_diff = got + next(i for i in range(n) if piece[i] != exp[i])
            got += n
    finally:
        conn.close()
    t1 = time.monotonic()
    res = {"status": resp.status, "content_length": clen, "transfer_encoding": te, "received_bytes": got,
           "sha256": sha.hexdigest(), "expected_sha256": expected_sha, "first_diff_offset": first_diff,
           "seconds": t1 - t0, "ttfb_s": ttfb,
           "mib_per_s": got / MIB / (t1 - t0) if t1 > t0 else None, "problems": []}
    if clen is not None and int(clen) != size:
        res["problems"].append(f"download: Content-Length {clen}, expected {size}")
    if got != size:
        res["problems"].append(f"download: received {got} bytes, expected {size}")
    if res["sha256"] != expected_sha:
        res["problems"].append(f"download: sha256 {res['sha256']} != expected {expected_sha}"
                               + (f" (first differing byte at offset {first_diff})" if first_diff is not None else ""))
    return res


MIB = H.MIB


def parse_args(argv=None):
    ap = H.arg_parser(__doc__)
    ap.add_argument("--size", default="1GiB", help="bytes each way: 256MiB, 1GiB, 1G, 100MB, 4096 (default 1GiB)")
    ap.add_argument("--max-hwm-mib", type=float, default=64.0, help="fail if gateway VmHWM exceeds (default 64)")
    ap.add_argument("--chunk-size", default="256KiB", help="upload chunk size (default 256KiB)")
    ap.add_argument("--upload-path", default="/upload", help="path POSTed to (the mock echoes any path)")
    ap.add_argument("--skip-upload", action="store_true")
    ap.add_argument("--skip-download", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0, help="socket timeout per operation (s)")
    ap.add_argument("--route-timeout", type=float, default=600.0,
                    help="route `timeout:` in the generated config, seconds: the upload's response head "
                         "only comes after the whole body (default 600)")
    args = ap.parse_args(argv)
    try:
        args.size_bytes = H.parse_size(args.size)
        args.chunk_size = H.parse_size(args.chunk_size)
    except ValueError as e:
        ap.error(str(e))
    if args.size_bytes <= 0 or args.chunk_size <= 0:
        ap.error("--size and --chunk-size must be > 0")
    return args


def run(args) -> int:
    resolve_binaries(args)
    size = args.size_bytes
    ts = time.strftime("%Y%m%d-%H%M%S")
    log(f"expected sha256 of {size:,} pattern bytes ...")
    exp_sha = expected_sha256(size)
    results: dict = {}
    problems: list = []
    with Supervisor(keep_workdir=args.keep_workdir) as sup:
        _, gw = H.start_single_gateway(sup, args, max_body_size=size + H.MIB,
                                       route_timeout=f"{int(args.route_timeout)}s")
        port = gw.addr["proxy"].port
        pids = gw.pids()
        results["rss_start_kib"] = procfs.rss_kib(pids)
        sampler = RssSampler(gw)
        sampler.start()
        try:
            for phase, enabled in (("upload", not args.skip_upload), ("download", not args.skip_download)):
                if not enabled:
                    continue
                sampler.phase = phase
                cpu0 = procfs.tree_cpu_seconds(gw.pids())
                log(f"{phase}: {size:,} bytes through the gateway ...")
                try:
                    r = upload(args, port, size) if phase == "upload" else download(args, port, size, exp_sha)
                except (OSError, http.client.HTTPException) as e:
                    r = {"problems": [f"{phase}: {type(e).__name__}: {e}"]}
                r["gateway_cpu_s"] = procfs.tree_cpu_seconds(gw.pids()) - cpu0
                r["rss_peak_sampled_kib"] = sampler.peaks.get(phase)
                results[phase] = r
                problems += r["problems"]
                if not gw.alive():
                    problems.append(f"gateway exited with code {gw.popen.returncode} during {phase}:\n"
                                    f"{gw.log_tail()}")
                    break
                log(f"{phase}: {'; '.join(r['problems']) or 'OK'}")
        finally:
            sampler.stop()
        pids = gw.pids()
        results["rss_end_kib"] = procfs.rss_kib(pids)
        results["hwm_kib"] = procfs.hwm_kib(pids) if pids else None

    # VmHWM is the kernel's peak; the sampled VmRSS can exceed it by a few pages (RSS counters are
    # synced lazily), so the check uses the larger of the two.
    sampled = max((v for v in sampler.peaks.values()), default=0)
    hwm = max(results.get("hwm_kib") or 0, sampled) or None
    results["peak_kib"] = hwm
    if hwm is not None and hwm / 1024 > args.max_hwm_mib:
        problems.append(f"gateway VmHWM {hwm / 1024:.1f} MiB > --max-hwm-mib {args.max_hwm_mib:g}")

    def rate(r):
        return f"{r['mib_per_s']:.0f} MiB/s ({r['seconds']:.1f} s)" if r.get("mib_per_s") else "n/a"

    lines = [f"## RustyGate streaming — {ts}", "",
             f"gateway `{args.gateway_bin}`, {size:,} bytes ({size / MIB:.0f} MiB) each way, "
             f"expected sha256 {exp_sha}", "",
             "| phase | result | throughput | gateway CPU | gateway peak VmRSS (sampled) |",
             "|---|---|---:|---:|---:|"]
    for phase in ("upload", "download"):
        r = results.get(phase)
        if r is None:
            continue
        lines.append(f"| {phase} | {'OK' if not r['problems'] else 'FAIL'} | {rate(r)} | "
                     f"{r.get('gateway_cpu_s', 0):.2f} s | {H.fmt_mib(r.get('rss_peak_sampled_kib'))} |")
    lines += ["", f"gateway VmRSS start {H.fmt_mib(results['rss_start_kib'])}, end {H.fmt_mib(results['rss_end_kib'])}, "
              f"VmHWM (peak) {H.fmt_mib(results['hwm_kib'])} (limit {args.max_hwm_mib:g} MiB)", ""]
    lines.append("FAIL:\n" + "\n".join(f"  - {p}" for p in problems) if problems else
                 "PASS: bodies intact both ways, gateway peak RSS within the limit")
    md = "\n".join(lines)
    H.publish(args.out_dir, f"stream-{ts}", {"timestamp": ts, "args": vars(args), "expected_sha256": exp_sha,
                                             "results": results, "problems": problems}, md)
    return 1 if problems else 0


def main(argv=None) -> int:
    return H.cli_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
