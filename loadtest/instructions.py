#!/usr/bin/env python3
"""Instructions per proxied request, counted by valgrind's callgrind: a cost measure that does
not move with the load of a shared box, for comparing two builds or configurations of the
gateway side by side (`make instructions`).

Wall-clock CPU per request (`make bench`) is what users pay, but on a shared 2-core box it moves
by ±30% from run to run, and a 5% regression hides in it. The number of user-space instructions
the gateway executes per request moves by well under 1% between runs of the same build (the
request mix and the batching of events under a light load are the only variables), so it tells
at once whether a change made the request path heavier, and callgrind's per-function counts say
where. What it does not count: time in the kernel (system calls, wake-ups: `make bench` and
`strace -c` measure those), cache misses and stalls.

Each target runs under `valgrind --tool=callgrind` with instrumentation off while it starts and
warms up; the count covers only a wrk run of --seconds at --connections against the mock
backend (which runs natively). Reported: instructions per request, and with --top N the N
functions with the most instructions of their own per request (for a diff between builds).

Example (the build of a tagged commit against the current one):
    python3 loadtest/instructions.py --top 25 \\
        --target base=loadtest/configs/gateway.yaml,/tmp/base/rustygate \\
        --target gateway=loadtest/configs/gateway.yaml
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))

import harness as H  # noqa: E402
from labkit import services  # noqa: E402
from labkit.base import SetupError, log  # noqa: E402
from labkit.binaries import add_binary_args, find_tool, resolve_binaries  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402

SCENARIOS = {"small": "/echo", "16k": "/bytes/16384"}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_binary_args(ap)
    ap.add_argument("--target", action="append", default=[], metavar="NAME=CONFIG[,BINARY]",
                    help="a gateway to measure: its config (placeholders as in bench.py's "
                         "--extra-gateway) and binary (default --gateway-bin); repeatable "
                         "(default: gateway=loadtest/configs/gateway.yaml)")
    ap.add_argument("--scenarios", default="small,16k", help="comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--seconds", type=float, default=8.0, help="length of the counted wrk run (default 8)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    ap.add_argument("--header", action="append", default=[], metavar="NAME=Header: value",
                    help="a request header wrk sends to target NAME (repeatable)")
    ap.add_argument("--top", type=int, default=0, help="list the N functions with the most own instructions")
    ap.add_argument("--startup-timeout", type=float, default=180.0)
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args(argv)
    args.targets = args.target or [f"gateway={HERE / 'configs' / 'gateway.yaml'}"]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.scenario_list:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}")
    return args


def callgrind_total(out_file: Path) -> int:
    """The `totals:` (or `summary:`) line of a callgrind dump: instructions executed."""
    for line in out_file.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise SetupError(f"{out_file}: no totals line")


def top_functions(out_file: Path, n: int) -> list[tuple[int, str]]:
    """The `n` functions with the most instructions of their own, from callgrind_annotate."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", str(out_file)],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+)", line)
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2).strip()))
    # The first row is the program total.
    return [r for r in rows if "PROGRAM TOTALS" not in r[1]][:n]


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


def measure(sup: Supervisor, spec: str, args, backend, wrk_bin: str) -> dict:
    name, _, rest = spec.partition("=")
    config, _, binary = rest.partition(",")
    binary = binary or args.gateway_bin
    text = H.render_gateway_config(Path(config).read_text(), backend.addr["http"].url, 1,
                                   {"@PLUGINS@": str(HERE.parent / "plugins")})
    cfg = sup.workdir / f"{name}.yaml"
    cfg.write_text(text)
    headers = [h.split("=", 1)[1] for h in args.header if h.split("=", 1)[0] == name]
    results = {}
    for scenario in args.scenario_list:
        # A gateway of its own for each scenario: callgrind's counts after a first dump and a
        # second switch of instrumentation are not to be trusted (seen: totals that wrapped).
        out = sup.workdir / f"callgrind-{name}-{scenario}.out"
        wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        gw = services.start_gateway(sup, binary, cfg, name=f"{name}-{scenario}", timeout=args.startup_timeout,
                                    wrapper=wrapper)
        url = f"http://{gw.addr['proxy']}{SCENARIOS[scenario]}"
        # Warm-up, uncounted: connections, pools, lazily built state.
        H.run_wrk(H.wrk_argv(wrk_bin, url, 2, args.connections, 1, headers=headers, timeout_s=10), sup.workdir)
        control("--instr=on", str(gw.pid))
        res = H.run_wrk(H.wrk_argv(wrk_bin, url, args.seconds, args.connections, 1, headers=headers,
                                   timeout_s=10), sup.workdir)
        control("--dump", str(gw.pid))
        sup.stop(gw)
        dump = Path(f"{out}.1")  # the first dump's file; the one written at exit comes after it
        if not dump.is_file():
            raise SetupError(f"{name}: callgrind wrote no dump {dump}")
        if res["error_total"] or not res["requests"]:
            raise SetupError(f"{name} {scenario}: wrk saw errors or no request: {res['raw'][-400:]}")
        total = callgrind_total(dump)
        per = total / res["requests"]
        top = [(ir / res["requests"], fn) for ir, fn in top_functions(dump, args.top)] if args.top else []
        log(f"{name} {scenario}: {res['requests']} requests, {per:,.0f} instructions/request")
        results[scenario] = {"requests": res["requests"], "per_request": per, "top": top}
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    resolve_binaries(args)
    if not find_tool("valgrind") or not find_tool("callgrind_control"):
        raise SetupError("valgrind not found: apt-get install -y valgrind")
    wrk_bin = H.require_wrk()
    t0 = time.monotonic()
    with Supervisor(keep_workdir=args.keep_workdir) as sup:
        backend = services.start_mock_backend(sup, args.mock_bin, "backend", timeout=30)
        results = {spec.split("=", 1)[0]: measure(sup, spec, args, backend, wrk_bin) for spec in args.targets}
    print(f"\nInstructions per request (callgrind, user space; wrk -c{args.connections} "
          f"-d{args.seconds:g}s; {time.monotonic() - t0:.0f} s):\n")
    first = next(iter(results))
    print("| target | " + " | ".join(args.scenario_list) + " |")
    print("|---|" + "---:|" * len(args.scenario_list))
    for name, res in results.items():
        cells = []
        for s in args.scenario_list:
            per, base = res[s]["per_request"], results[first][s]["per_request"]
            cells.append(f"{per:,.0f}" + ("" if name == first else f" (×{per / base:.3f})"))
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, res in results.items():
        for s in args.scenario_list:
            if res[s]["top"]:
                print(f"\n{name} {s}: instructions per request by function (own)")
                for per, fn in res[s]["top"]:
                    print(f"  {per:10,.0f}  {fn[:150]}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as e:
        print(f"instructions: {e}", file=sys.stderr)
        sys.exit(2)
