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

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
from labkit import services  # noqa: E402
from labkit.base import SetupError  # noqa: E402
from labkit.browser import dump_dom, parse_check_args, serve_page  # noqa: E402
from labkit.http import http_get  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402

PAGE = """<!doctype html><html><head><title>pending</title></head><body>
<script>
fetch("%(target)s", {headers: {"X-Api-Key": "demo"}})
  .then(r => r.json().then(j => { document.title = "OK " + r.status + " " + j.backend; }))
  .catch(e => { document.title = "BLOCKED " + e.name; });
</script></body></html>"""


def page_title(chromium: str, url: str, profile: str) -> str:
    out = dump_dom(chromium, url, profile)
    start, end = out.find("<title>"), out.find("</title>")
    return out[start + 7:end] if start >= 0 and end > start else f"(no title in {out[:200]!r})"


def main() -> int:
    args = parse_check_args(__doc__.splitlines()[0])
    if args is None:
        return 2

    servers = []
    try:
        with Supervisor(prefix="check-cors-") as sup:
            backend = services.start_mock_backend(sup, args.mock_bin, "backend", label="b1", timeout=20)
            # The CORS policy names the pages' origins, so the page servers start first and get
            # their fetch target (the gateway's URL) once the gateway runs.
            page = {"html": ""}
            servers = [serve_page(page) for _ in ("allowed", "disallowed")]
            page_a, page_b = (s.server_address[1] for s in servers)
            config = sup.workdir / "gateway.yaml"
            config.write_text(f"""server: {{ listen: "127.0.0.1:0", workers: 1 }}
admin: {{ listen: "127.0.0.1:0" }}
log: {{ level: "{services.gateway_log_level('warn')}" }}
cors:
  pages: {{ allow_origins: ["http://127.0.0.1:{page_a}"], allow_headers: [X-Api-Key] }}
routes:
  - {{ name: api, path: /api, backend: "{backend.addr['http'].url}", cors: pages, strip_prefix: true }}
""")
            gw = services.start_gateway(sup, args.gateway_bin, config, timeout=20)
            page["html"] = PAGE % {"target": f"{gw.addr['proxy'].url}/api/echo"}
            results = {}
            for name, port in (("allowed", page_a), ("disallowed", page_b)):
                results[name] = page_title(args.chromium, f"http://127.0.0.1:{port}/", str(sup.workdir / name))
                print(f"{name} page http://127.0.0.1:{port}: {results[name]}", flush=True)
            stats = json.loads(http_get(f"{backend.addr['http'].url}/control/stats", timeout=5).body)
    except SetupError as e:
        print(f"setup: {e}", file=sys.stderr)
        return 2
    finally:
        for s in servers:
            s.shutdown()
    ok = results["allowed"] == "OK 200 b1" and results["disallowed"].startswith("BLOCKED")
    # Only the allowed page's real request reaches the backend: preflights are the gateway's.
    ok = ok and stats["hits"] == 1
    print(f"backend requests: {stats['hits']} (expected 1)")
    print("check-cors-browser: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
