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
