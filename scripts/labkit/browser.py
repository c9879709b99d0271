"""Headless Chromium for the checks that need a real browser (CORS, TLS)."""

from __future__ import annotations

import subprocess


def dump_dom(chromium: str, url: str, profile: str, extra_args: tuple[str, ...] = ()) -> str:
    """The DOM Chromium ends with after loading `url` (scripts run for up to 5 s of virtual
    time), in a fresh profile directory `profile`; `extra_args` go before the URL."""
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra_args, "--dump-dom", url],
        capture_output=True, text=True, timeout=60,
    ).stdout


def parse_check_args(description: str):
    """The browser checks' command line (--gateway-bin, --mock-bin, --chromium: debug builds and
    the Chromium on PATH by default). None, after saying why, when no Chromium is found."""
    import argparse
    import shutil
    import sys

    from .binaries import default_bin

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--gateway-bin", default=default_bin("rustygate", "debug"))
    ap.add_argument("--mock-bin", default=default_bin("mock-backend", "debug"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    args = ap.parse_args()
    if not args.chromium:
        print("setup: no chromium (apt-get install chromium)", file=sys.stderr)
        return None
    return args
