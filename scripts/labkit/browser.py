"""Headless Chromium for the checks that need a real browser (CORS, TLS)."""

from __future__ import annotations

import http.server
import subprocess
import threading


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


def serve_page(page: dict) -> http.server.ThreadingHTTPServer:
    """Serves page["html"] (read per request) at `/`, on a loopback port the OS picks
    (`.server_address`). A page whose scripts wait on events Chromium's virtual time does not wait
    for (WebSocket) holds an `<img src="/wait">` and fetches `/done` when finished: `/wait`
    answers only then (at most 15 s), so the DOM is dumped once the page is done."""
    finished = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (stdlib naming)
            if self.path == "/done":
                finished.set()
            elif self.path == "/wait":
                finished.wait(15)
            body = page["html"].encode() if self.path == "/" else b""
            self.send_response(200 if body else 204)
            if body:
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
