#!/usr/bin/env python3
"""CORS in a real browser: headless Chromium loads a page from one loopback origin that fetches
the gateway on another origin, and the gateway's CORS policy decides.

Two page origins (http://127.0.0.1:PAGE_A allowed by the policy, http://127.0.0.1:PAGE_B not)
each serve a page whose script does a cross-origin `fetch` with a custom header (so the browser
sends a preflight). The expected outcome: the allowed page reads the backend's answer, the other
page's fetch is blocked by the browser — and the backend never sees the blocked request.

Usage: scripts/check_cors_browser.py [--gateway-bin B] [--mock-bin M] [--chromium C]
Exit 0 pass, 1 fail, 2 setup problem (no chromium, a process did not start).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PAGE = """<!doctype html><html><head><title>pending</title></head><body>
<script>
fetch("%(target)s", {headers: {"X-Api-Key": "demo"}})
  .then(r => r.json().then(j => { document.title = "OK " + r.status + " " + j.backend; }))
  .catch(e => { document.title = "BLOCKED " + e.name; });
</script></body></html>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_page(port: int, html: str) -> http.server.ThreadingHTTPServer:
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (stdlib naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"setup: {what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"setup: {what} did not answer {url}")


def page_title(chromium: str, url: str, profile: str) -> str:
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60,
    ).stdout
    start, end = out.find("<title>"), out.find("</title>")
    return out[start + 7:end] if start >= 0 and end > start else f"(no title in {out[:200]!r})"


def main() -> int:
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/rustygate-target"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway-bin", default=os.path.join(target_dir, "debug/rustygate"))
    ap.add_argument("--mock-bin", default=os.path.join(target_dir, "debug/mock-backend"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    args = ap.parse_args()
    if not args.chromium:
        print("setup: no chromium (apt-get install chromium)", file=sys.stderr)
        return 2

    backend, gw, admin, page_a, page_b = (free_port() for _ in range(5))
    procs: list[subprocess.Popen] = []
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""server: {{ listen: "127.0.0.1:{gw}", workers: 1 }}
admin: {{ listen: "127.0.0.1:{admin}" }}
log: {{ level: warn }}
cors:
  pages: {{ allow_origins: ["http://127.0.0.1:{page_a}"], allow_headers: [X-Api-Key] }}
routes:
  - {{ name: api, path: /api, backend: "http://127.0.0.1:{backend}", cors: pages, strip_prefix: true }}
""")
        try:
            procs.append(subprocess.Popen([args.mock_bin, "--port", str(backend), "--name", "b1"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen([args.gateway_bin, "--config", config],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{backend}/health", procs[0], "mock backend")
            wait_http(f"http://127.0.0.1:{admin}/healthz", procs[1], "gateway")
            target = f"http://127.0.0.1:{gw}/api/echo"
            servers = [serve_page(p, PAGE % {"target": target}) for p in (page_a, page_b)]
            results = {}
            for name, port in (("allowed", page_a), ("disallowed", page_b)):
                results[name] = page_title(args.chromium, f"http://127.0.0.1:{port}/", os.path.join(tmp, name))
                print(f"{name} page http://127.0.0.1:{port}: {results[name]}", flush=True)
            stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{backend}/control/stats", timeout=5))
        finally:
            for s in servers:
                s.shutdown()
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
    ok = results["allowed"] == "OK 200 b1" and results["disallowed"].startswith("BLOCKED")
    # Only the allowed page's real request reaches the backend: preflights are the gateway's.
    ok = ok and stats["hits"] == 1
    print(f"backend requests: {stats['hits']} (expected 1)")
    print("check-cors-browser: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
