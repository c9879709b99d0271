#!/usr/bin/env python3
"""WebSocket in a real browser: headless Chromium opens sessions through the gateway.

A page served from loopback opens `new WebSocket(...)` to the gateway's `/ws` route (relayed to
the mock backend's actix-ws echo): three messages echoed back in order, then a normal close
(1000). A second session on a route whose `websocket_max_frame_size` is 1 KiB sends a 2 KiB
message: the gateway closes it with 1009 and the browser's `close` event says so. Expected: the
page's title `OK echo=3 close=1000 big=1009`, the gateway's access lines for both sessions
(status 101, `websocket` closed / message_too_big, the browser's `Origin` relayed), and the
session gauge back at 0.

Usage: scripts/check_ws_browser.py [--gateway-bin B] [--mock-bin M] [--chromium C]
Exit 0 pass, 1 fail, 2 setup problem (no chromium, a process did not start).
"""

from __future__ import annotations

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
from labkit import services  # noqa: E402
from labkit.base import SetupError  # noqa: E402
from labkit.browser import dump_dom, parse_check_args, serve_page  # noqa: E402
from labkit.metrics import read_metric  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402
from labkit.waiting import wait_until  # noqa: E402

# The image keeps the page loading (Chromium's virtual time waits for it, not for WebSocket
# events) until the page says it is done, so the DOM is dumped with the final title.
PAGE = """<!doctype html><html><head><title>pending</title></head><body><img src="/wait"><script>
const base = "%(base)s";
const result = {};
function done() {
  if ("close" in result && "big" in result) {
    document.title = `OK echo=${result.echo} close=${result.close} big=${result.big}`;
    fetch("/done");
  }
}
const ws = new WebSocket(base + "/ws/echo");
const got = [];
ws.onopen = () => { for (let i = 0; i < 3; i++) ws.send("hello " + i); };
ws.onmessage = (e) => {
  got.push(e.data);
  if (got.length === 3) {
    result.echo = got.every((m, i) => m === "hello " + i) ? 3 : "bad:" + got.join("|");
    ws.close(1000, "done");
  }
};
ws.onclose = (e) => { result.close = e.code; done(); };
ws.onerror = () => { document.title = "ERROR echo session"; };
const big = new WebSocket(base + "/small/ws/echo");
big.onopen = () => big.send("x".repeat(2048));
big.onclose = (e) => { result.big = e.code; done(); };
</script></body></html>"""


def main() -> int:
    args = parse_check_args(__doc__.splitlines()[0])
    if args is None:
        return 2
    server = None
    problems = []
    try:
        with Supervisor(prefix="check-ws-browser-") as sup:
            backend = services.start_mock_backend(sup, args.mock_bin, "backend", label="b1", timeout=20)
            config = sup.workdir / "gateway.yaml"
            url = backend.addr["http"].url
            config.write_text(f"""server: {{ listen: "127.0.0.1:0", workers: 1 }}
admin: {{ listen: "127.0.0.1:0" }}
log: {{ level: "{services.gateway_log_level('warn')}", format: json, access_log: true }}
routes:
  - {{ name: ws, path: /ws, backend: "{url}", websocket: true }}
  - {{ name: small, path: /small, backend: "{url}", strip_prefix: true, websocket: true, websocket_max_frame_size: 1KiB }}
""")
            gw = services.start_gateway(sup, args.gateway_bin, config, timeout=20)
            base = gw.addr["proxy"].url.replace("http://", "ws://", 1)
            server = serve_page({"html": PAGE % {"base": base}})
            page = f"http://127.0.0.1:{server.server_address[1]}/"
            out = dump_dom(args.chromium, page, str(sup.workdir / "profile"))
            start, end = out.find("<title>"), out.find("</title>")
            title = out[start + 7:end] if start >= 0 and end > start else f"(no title in {out[:200]!r})"
            print(f"page {page}: {title}", flush=True)
            if title != "OK echo=3 close=1000 big=1009":
                problems.append(f"page title {title!r}")

            def sessions() -> list[dict]:
                lines = [json.loads(ln) for ln in gw.log_text().splitlines() if '"message":"access"' in ln]
                return [a for a in lines if a.get("status") == 101]

            wait_until(lambda: len(sessions()) >= 2, 10)
            seen = sorted((a.get("route"), a.get("websocket"), a.get("ws_client_close")) for a in sessions())
            print(f"access lines (route, websocket, client close code): {seen}")
            if seen != [("small", "message_too_big", None), ("ws", "closed", 1000)]:
                problems.append(f"access lines {seen}")
            admin = gw.addr["admin"].url
            still_open = read_metric(f"{admin}/metrics", "rustygate_websocket_connections", {}, timeout=5)
            if still_open:
                problems.append(f"rustygate_websocket_connections = {still_open} after the page")
    except SetupError as e:
        print(f"setup: {e}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.shutdown()
    for p in problems:
        print(f"problem: {p}")
    print("check-ws-browser: " + ("FAIL" if problems else "PASS"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
