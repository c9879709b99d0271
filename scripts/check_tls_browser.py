#!/usr/bin/env python3
"""HTTPS in a real browser: headless Chromium loads a page through the gateway's HTTPS listener.

The gateway serves a certificate of a throwaway CA that the browser does not trust; Chromium is
told to accept that one key by its SPKI hash (`--ignore-certificate-errors-spki-list`, the way
a pinned test key is trusted without touching the system's store). Expected: the page (the mock
backend's JSON echo, through the gateway) loads over HTTP/2 with `X-Forwarded-Proto: https` seen
by the backend, and the gateway's access line says `"protocol":"h2"` with the TLS version and
the SNI; with another key's hash the browser refuses the certificate and no request reaches the
backend.

Usage: scripts/check_tls_browser.py [--gateway-bin B] [--mock-bin M] [--chromium C]
Exit 0 pass, 1 fail, 2 setup problem (no chromium or openssl, a process did not start).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
from labkit import services  # noqa: E402
from labkit.base import SetupError  # noqa: E402
from labkit.browser import dump_dom, parse_check_args  # noqa: E402
from labkit.http import http_get  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402
from labkit.waiting import wait_until  # noqa: E402


def openssl(args: list[str], cwd) -> bytes:
    try:
        return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError(f"openssl {' '.join(args[:2])} failed (apt-get install openssl): {e}") from None


def make_certificate(workdir) -> str:
    """A CA and a certificate for `localhost` signed by it; returns the leaf's SPKI hash
    (base64 of the SHA-256 of its SubjectPublicKeyInfo), what Chromium pins."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=browser test CA"],
            workdir)
    openssl(["req", *ec, "-keyout", "gw.key", "-out", "gw.csr", "-subj", "/CN=localhost"], workdir)
    (workdir / "gw.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl(["x509", "-req", "-in", "gw.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "gw.pem",
             "-days", "2", "-extfile", "gw.ext"], workdir)
    pubkey = openssl(["x509", "-in", "gw.pem", "-pubkey", "-noout"], workdir)
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pubkey, capture_output=True,
                         check=True, timeout=30).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def load(chromium: str, url: str, profile: str, spki: str) -> str:
    """The DOM Chromium ends with for `url`, trusting the key `spki` only."""
    return dump_dom(chromium, url, profile, (f"--ignore-certificate-errors-spki-list={spki}",))


def main() -> int:
    args = parse_check_args(__doc__.splitlines()[0])
    if args is None:
        return 2
    problems = []
    try:
        with Supervisor(prefix="check-tls-browser-") as sup:
            spki = make_certificate(sup.workdir)
            backend = services.start_mock_backend(sup, args.mock_bin, "backend", label="b1", timeout=20)
            config = sup.workdir / "gateway.yaml"
            config.write_text(f"""server:
  listen: "127.0.0.1:0"
  workers: 1
  tls: {{ listen: "127.0.0.1:0", certificates: [ {{ cert_file: "{sup.workdir / 'gw.pem'}", key_file: "{sup.workdir / 'gw.key'}" }} ] }}
admin: {{ listen: "127.0.0.1:0" }}
log: {{ level: "{services.gateway_log_level('warn')}", format: json, access_log: true }}
routes:
  - {{ name: page, path: /, backend: "{backend.addr['http'].url}" }}
""")
            gw = services.start_gateway(sup, args.gateway_bin, config, timeout=20)
            tls_port = int(re.search(r'tls\W+\[127\.0\.0\.1:(\d+)', gw.log_text()).group(1))
            url = f"https://localhost:{tls_port}/echo?from=chromium"

            dom = load(args.chromium, url, str(sup.workdir / "pinned"), spki)
            m = re.search(r"<pre[^>]*>(.*?)</pre>", dom, re.S)
            echo = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")) if m else None
            if not echo:
                problems.append(f"the pinned load showed no echo: {dom[:300]!r}")
            else:
                proto = [v for k, v in echo["headers"] if k == "x-forwarded-proto"]
                print(f"pinned: {url} -> backend {echo['backend']} saw {echo['uri']} with X-Forwarded-Proto {proto}")
                if proto != ["https"] or echo["uri"] != "/echo?from=chromium":
                    problems.append(f"the backend saw {echo['uri']} with X-Forwarded-Proto {proto}")
            # The access line of the browser's request (written when the response ended).
            def access_lines() -> list[dict]:
                return [json.loads(ln[ln.index("{"):]) for ln in gw.log_text().splitlines()
                        if '"message":"access"' in ln and '"path":"/echo"' in ln]
            wait_until(lambda: bool(access_lines()), 10)
            access = access_lines()
            print(f"access lines: {[(a.get('protocol'), a.get('tls_version'), a.get('sni')) for a in access]}")
            if not any(a.get("protocol") == "h2" and a.get("tls_version") in ("1.2", "1.3") and a.get("sni") == "localhost"
                       for a in access):
                problems.append(f"no access line with protocol h2, a TLS version and SNI localhost: {access}")

            hits = json.loads(http_get(f"{backend.addr['http'].url}/control/stats", timeout=5).body)["hits"]
            wrong = base64.b64encode(hashlib.sha256(b"another key").digest()).decode()
            dom = load(args.chromium, url.replace("chromium", "unpinned"), str(sup.workdir / "unpinned"), wrong)
            time.sleep(0.5)
            after = json.loads(http_get(f"{backend.addr['http'].url}/control/stats", timeout=5).body)["hits"]
            print(f"another key pinned: {'refused' if '<pre' not in dom else 'LOADED'}; backend requests {hits} -> {after}")
            if "<pre" in dom or after != hits:
                problems.append("a browser pinning another key got through")
    except SetupError as e:
        print(f"setup: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"FAIL: {p}")
    print("check-tls-browser: " + ("FAIL" if problems else "PASS"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
