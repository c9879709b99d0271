#!/usr/bin/env python3
"""Differential run of the hostile-HTTP/1.1 corpus: NGINX vs the gateway.

Starts two recording backends (scripts/differential/backend.py, in this process), NGINX and the
gateway on loopback with the same route layout (nginx.conf.tmpl, gateway.yaml.tmpl; the gateway
listens on ports the OS picks and reports, NGINX on a free port, picked again if taken),
replays every case of corpus.py byte for byte through both proxies at once (a fresh connection
each), records what each proxy answered and what reached its backend, then checks:

  (a) refused-forwarded   the gateway never forwards what NGINX refuses: NGINX answered 4xx/5xx
                          and the gateway's backend got more requests than NGINX's
  (b) smuggling           the gateway's backend never gets more requests than the client meant
                          to send (the case's `requests`)
  (c) no-answer           the gateway answers every case with a status line, and never leaves
                          pipelined requests unanswered on an open connection (fewer than the
                          case's `answers`, then a close, is allowed), unless the case is marked
                          `connection_unusable`
  (d) status-class        the sequence of status classes (2xx, 4xx, none …) is the same as
                          NGINX's; differences are printed as "to document" and fail only with
                          --strict
  (e) path                every path the gateway's backend receives is normalised: no `.`/`..`
                          segment (also after decoding %2f/%5c, and with `;params` cut), no
                          `%2e`, no `//`, no `\\`, no `%00`, no overlong UTF-8 dot or slash
  (f) headers             the case's `forbid`/`require` patterns hold on every head the
                          gateway's backend receives (underscore or forged identity headers)
  (g) framing             the gateway never forwards an ambiguous or malformed head (both
                          Content-Length and Transfer-Encoding, several or non-digit
                          Content-Length, TE other than `chunked`, obs-fold, bare LF, control
                          bytes, whitespace in names, lines without a colon)

Cases listed in KNOWN_DIFFERENCES (with the reason) are exempt from (a) and (d). Exit status: 0
when every check passes, 1 when one fails, 2 when the run could not be set up.

    python3 scripts/differential/run.py                      # everything, < 1 min
    python3 scripts/differential/run.py --only 'path-*' --markdown /tmp/diff.md
    python3 scripts/differential/run.py --list               # the corpus
    python3 scripts/differential/run.py --show smug-te-vtab-cl

Python 3.11 standard library only; loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import fnmatch
import json
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import corpus as C  # noqa: E402
from backend import RecordingBackend  # noqa: E402
from labkit import nginx, services  # noqa: E402
from labkit.base import SetupError, log  # noqa: E402
from labkit.binaries import cargo_target_dir, find_tool, require_executable, tool_version  # noqa: E402
from labkit.jwt import mint_hs256  # noqa: E402
from labkit.procs import Supervisor  # noqa: E402
from labkit.templates import render  # noqa: E402
from labkit.waiting import wait_until  # noqa: E402

# Case id -> why the gateway is allowed to differ from NGINX there (exempts checks a and d).
# Add an entry only with a reason a reviewer can check, e.g. "NGINX buffers request bodies, the
# gateway streams them: the backend sees the head before the 413".
KNOWN_DIFFERENCES: dict[str, str] = {
    "smug-te-tab-only": "RFC 9110 §5.5 allows a tab around a field value (OWS); one request is "
    "forwarded, whole, and nothing is smuggled. NGINX refuses the tab.",
    "smug-te-trailing-tab-only": "as smug-te-tab-only: a trailing tab is optional whitespace.",
    "smug-cl-tab-value": "as smug-te-tab-only: `Content-Length:\t5` is a valid field with OWS.",
    "big-body-chunked-over": "NGINX buffers a request body before contacting the backend; the "
    "gateway reads ahead 64 KiB, then streams (bounded memory for any size). A chunked body that "
    "passes max_body_size later is cut: the backend sees an incomplete body and a closed "
    "connection, never a complete request, and the client gets 413.",
}

JWT_SECRET = "differential-corpus-secret-0123456789abcdef"  # >= 32 bytes, as the gateway requires
JWT_SUB = "diff-user"
NGINX_TOKEN = "good-token"
DEFAULT_HOST = "diff.test"

GRACE = 0.05         # after the expected answers arrived: wait this long for extra bytes
PART_GAP = 0.1       # pause between the writes of a multi-part case
SETTLE_IDLE = 0.04   # a case is over when both backends have been idle this long ...
SETTLE_MAX = 0.5     # ... or after this long

CHECKS = {
    "a": "refused-forwarded: NGINX refused (4xx/5xx), the gateway forwarded",
    "b": "smuggling: the gateway's backend got more requests than the client sent",
    "c": "no-answer: the gateway did not answer (or left pipelined requests unanswered)",
    "d": "status-class: different status class from NGINX (difference to document)",
    "e": "path: the gateway forwarded a path that is not normalised",
    "f": "headers: a forbidden header reached the backend, or a required one did not",
    "g": "framing: the gateway forwarded an ambiguous or malformed head",
}
MALFORMED_FLAGS = ("bare-LF", "obs-fold", "without colon", "whitespace in header name", "control byte",
                   "several Content-Length", "not plain digits", "both Content-Length",
                   "several Transfer-Encoding", "other than exactly chunked", "unframeable")


def nginx_version(nginx_bin: str) -> str:
    """`nginx -v` says "nginx version: nginx/1.22.1": the part after the slash."""
    return (tool_version([nginx_bin, "-v"]) or "?").split("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# Client side: send a case, read what comes back
# ---------------------------------------------------------------------------------------------

@dataclass
class Reply:
    statuses: list = field(default_factory=list)       # final status codes, in order
    status_lines: list = field(default_factory=list)
    interim: list = field(default_factory=list)        # 1xx codes
    eof: bool = False                # the proxy closed the connection
    reset: bool = False              # ... with a reset
    timed_out: bool = False          # fewer answers than expected when the time was up
    non_http: bool = False           # bytes that are not an HTTP/1.x response
    send_error: str = ""
    received: int = 0
    head: str = ""                   # the first bytes received, escaped

    def summary(self) -> str:
        if self.statuses:
            text = " ".join(str(s) for s in self.statuses)
            if self.interim:
                text = " ".join(str(s) for s in self.interim) + " " + text
            if self.non_http:
                text += " +junk"
            return text + (" (reset)" if self.reset else " (closed)" if self.eof else "")
        if self.non_http:
            return "non-HTTP bytes" + (" (closed)" if self.eof else "")
        if self.reset:
            return "reset"
        if self.eof:
            return "closed"
        return "no answer"

    def classes(self) -> str:
        """What is compared between the proxies: e.g. `2xx`, `2xx 4xx`, `none`."""
        return " ".join(f"{s // 100}xx" for s in self.statuses) or "none"


def parse_responses(buf: bytes, methods: list[str], eof: bool) -> tuple[list, list, bool]:
    """Split `buf` into responses. Returns (finals [(status, line)], interim codes, non_http)."""
    finals, interim, pos = [], [], 0
    while pos < len(buf):
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if not b"HTTP/".startswith(buf[pos:pos + 5]):   # not even the start of a status line
                return finals, interim, True
            break
        lines = buf[pos:end].split(b"\r\n")
        m = re.fullmatch(rb"HTTP/\d\.\d (\d{3})(?: .*)?", lines[0])
        if not m:
            return finals, interim, True
        status = int(m.group(1))
        headers = {}
        for ln in lines[1:]:
            name, _, value = ln.partition(b":")
            headers.setdefault(name.strip().lower(), value.strip().lower())
        body = end + 4
        if 100 <= status < 200 and status != 101:
            interim.append(status)
            pos = body
            continue
        method = methods[len(finals)] if len(finals) < len(methods) else (methods[-1] if methods else "GET")
        if status == 101:
            finals.append((status, lines[0].decode("latin-1")))
            break  # another protocol follows
        if method == "HEAD" or status in (204, 304):
            length = 0
        elif b"chunked" in headers.get(b"transfer-encoding", b""):
            length = _chunked_length(buf, body)
            if length is None:
                break
        elif b"content-length" in headers and headers[b"content-length"].isdigit():
            length = int(headers[b"content-length"])
        else:  # delimited by the end of the connection
            if not eof:
                break
            length = len(buf) - body
        if body + length > len(buf):
            break
        finals.append((status, lines[0].decode("latin-1")))
        pos = body + length
    return finals, interim, False


def _chunked_length(buf: bytes, start: int) -> int | None:
    """Length of a complete chunked body at buf[start:], or None if incomplete."""
    pos = start
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        try:
            size = int(buf[pos:nl].split(b";")[0].strip(), 16)
        except ValueError:
            return None
        pos = nl + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            return None if end < 0 else end + 4 - start
        pos += size + 2
        if pos > len(buf):
            return None


def replay(port: int, parts: list[bytes], c: C.Case, timeout: float) -> Reply:
    """One case on a fresh connection: send, read until the answers are in, EOF or timeout."""
    r = Reply()
    methods = c.method_list()
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        r.send_error = f"connect: {e}"
        return r
    buf = b""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i, part in enumerate(parts):
                if i:
                    time.sleep(PART_GAP)
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                sock.sendall(part)
            if c.half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            r.send_error = type(e).__name__
        grace_until = None
        while True:
            now = time.monotonic()
            limit = deadline if grace_until is None else min(deadline, grace_until)
            if now >= limit:
                r.timed_out = grace_until is None
                break
            sock.settimeout(limit - now)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                r.reset = r.eof = True
                break
            except OSError as e:
                r.send_error = r.send_error or type(e).__name__
                r.eof = True
                break
            if not data:
                r.eof = True
                break
            buf += data
            finals, _, _ = parse_responses(buf, methods, False)
            if len(finals) >= c.answers and grace_until is None:
                grace_until = time.monotonic() + GRACE
    finally:
        sock.close()
    finals, r.interim, r.non_http = parse_responses(buf, methods, r.eof)
    r.statuses = [s for s, _ in finals]
    r.status_lines = [ln for _, ln in finals]
    r.received = len(buf)
    r.head = buf[:300].decode("latin-1").encode("unicode_escape").decode("ascii")
    return r


# ---------------------------------------------------------------------------------------------
# What reached a backend
# ---------------------------------------------------------------------------------------------

@dataclass
class Seen:
    """The backend's view of one case through one proxy."""
    records: list
    fragments: list
    garbage: list
    connections: int

    @property
    def requests(self) -> int:
        """Requests that reached the backend: complete heads plus started ones."""
        return len(self.records) + len(self.fragments)

    def summary(self) -> str:
        if not self.requests and not self.garbage:
            return "— (connection opened, nothing sent)" if self.connections else "—"
        items = []
        for rec in self.records:
            text = f"`{_cut(rec.request_line, 70)}`"
            notes = notable(rec)
            if notes:
                text += " " + ", ".join(notes)
            if rec.framing != "none" and not rec.body_complete:
                text += " (body incomplete)"
            items.append(text)
        items += [f"partial head `{_cut(f['bytes'], 50)}`" for f in self.fragments]
        items += [f"{g['len']} B unframeable" for g in self.garbage]
        prefix = f"{self.requests}: " if self.requests != 1 else ""
        return prefix + "; ".join(items)


def notable(rec) -> list[str]:
    """Headers and flags worth showing in the table."""
    out = []
    for name, value in rec.headers:
        low = name.strip().lower()
        if low == "x-user-id" or "_" in name or low == "x-smuggled":
            out.append(f"{name.strip()}={_cut(value, 20)}")
    out += [f for f in rec.flags if any(k in f for k in MALFORMED_FLAGS)]
    return out


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


def path_problems(target: str) -> list[str]:
    """Check (e): what is not normalised in the path of a forwarded request-target."""
    m = re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*", target)
    path = target[m.end():] if m else target
    path = re.split(r"[?]", path, maxsplit=1)[0]
    problems = []
    lower = path.lower()
    if "%2e" in lower:
        problems.append("%2e")
    if "//" in path:
        problems.append("//")
    if "\\" in path:
        problems.append("backslash")
    if "%00" in lower or "\x00" in path:
        problems.append("%00")
    if re.search(r"%c0%a[ef]|%c1%9c|%e0%80%a[ef]", lower):
        problems.append("overlong UTF-8 dot/slash")
    decoded = re.sub(r"%2f", "/", re.sub(r"%5c", "/", path, flags=re.I), flags=re.I)
    for seg in decoded.replace("\\", "/").split("/"):
        seg = seg.split(";", 1)[0]
        if seg in (".", ".."):
            problems.append(f"`{seg}` segment")
            break
        if unquote_to_bytes(seg) in (b".", b".."):
            problems.append(f"encoded `{seg}` segment")
            break
    return problems


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

@dataclass
class Target:
    name: str           # "nginx" | "gateway"
    port: int
    backend: RecordingBackend
    token: str


def settle(backends: list[RecordingBackend]) -> None:
    """Wait until every backend has been quiet for SETTLE_IDLE (at most SETTLE_MAX)."""
    wait_until(lambda: all(b.idle_for() >= SETTLE_IDLE for b in backends), SETTLE_MAX, interval=0.01)


def render_case(c: C.Case, token: str, host: str) -> list[bytes]:
    return [p.replace(b"{HOST}", host.encode()).replace(b"{TOKEN}", token.encode()) for p in c.raw]


def run_cases(cases: list[C.Case], targets: list[Target], timeout: float, host: str) -> list[dict]:
    results = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(targets))
    started = time.monotonic()
    try:
        for i, c in enumerate(cases, 1):
            marks = [t.backend.mark() for t in targets]
            futures = [pool.submit(replay, t.port, render_case(c, t.token, host), c, timeout) for t in targets]
            replies = [f.result() for f in futures]
            settle([t.backend for t in targets])
            entry = {"case": c}
            for t, mark, reply in zip(targets, marks, replies):
                snap = t.backend.snapshot(mark)
                entry[t.name] = {"reply": reply, "seen": Seen(snap["records"], snap["fragments"],
                                                                 snap["garbage"], snap["connections"])}
            results.append(entry)
            if i % 50 == 0:
                log(f"  {i}/{len(cases)} cases, {time.monotonic() - started:.0f} s")
    finally:
        pool.shutdown(wait=True)
    return results


def evaluate(entry: dict) -> dict:
    """Checks (a)–(g) for one case; returns {check letter: reason} for the failures, plus
    `info` notes about NGINX (used to calibrate the corpus, never failures)."""
    c: C.Case = entry["case"]
    ng, gw = entry["nginx"], entry["gateway"]
    nr, gr = ng["reply"], gw["reply"]
    ns, gs = ng["seen"], gw["seen"]
    fails, info = {}, []
    known = c.id in KNOWN_DIFFERENCES

    nginx_refused = any(s >= 400 for s in nr.statuses)
    if nginx_refused and gs.requests > ns.requests and not known:
        fails["a"] = (f"NGINX {nr.summary()} with {ns.requests} forwarded; "
                      f"gateway forwarded {gs.requests}")
    if gs.requests > c.requests:
        fails["b"] = f"backend got {gs.requests} requests, client sent {c.requests}"
    if ns.requests > c.requests:
        info.append(f"NGINX's backend got {ns.requests} requests (case says {c.requests})")
    if not c.connection_unusable:
        if not gr.statuses:
            fails["c"] = gr.summary()
        elif len(gr.statuses) < c.answers and not gr.eof:
            # Closing the connection after complete answers is allowed (the client retries the
            # rest); leaving pipelined requests unanswered on an open connection is not.
            fails["c"] = f"{len(gr.statuses)} of {c.answers} answers, connection left open ({gr.summary()})"
    if nr.classes() != gr.classes() and not known:
        fails["d"] = f"NGINX {nr.classes()}, gateway {gr.classes()}"
    for rec in gs.records:
        probs = path_problems(rec.target)
        if probs:
            fails["e"] = f"`{_cut(rec.target, 60)}`: {', '.join(probs)}"
            break
    for rec in ns.records:
        probs = path_problems(rec.target)
        if probs:
            info.append(f"NGINX forwarded `{_cut(rec.target, 60)}` ({', '.join(probs)})")
            break
    hdr = []
    for rec in gs.records:
        for pat in c.forbid:
            m = re.search(pat, rec.head, re.I | re.M)
            if m:
                line_end = rec.head.find(b"\n", m.start())
                line = rec.head[m.start():line_end if line_end >= 0 else None]
                hdr.append(f"forbidden `{_cut(line.decode('latin-1').strip(), 60)}`")
        for pat in c.require:
            if not re.search(pat, rec.head, re.I | re.M):
                hdr.append(f"missing /{pat.decode('latin-1')}/")
    if hdr:
        fails["f"] = "; ".join(dict.fromkeys(hdr))
    bad = [f for rec in gs.records for f in rec.flags if any(k in f for k in MALFORMED_FLAGS)]
    if gs.garbage:
        bad.append(f"{sum(g['len'] for g in gs.garbage)} unframeable bytes")
    if bad:
        fails["g"] = "; ".join(dict.fromkeys(bad))
    return {"fails": fails, "info": info}


def totals(results: list[dict]) -> dict:
    t = {"cases": len(results), "same status class": 0, "different status class": 0,
         "gateway forwarded what NGINX refused": 0, "smuggling (gateway)": 0,
         "gateway no answer": 0, "gateway no answer, connection_unusable cases": 0,
         "NGINX no answer": 0, "path not normalised (gateway)": 0,
         "header checks failed (gateway)": 0, "malformed head forwarded (gateway)": 0,
         "known differences": 0}
    for e in results:
        c, ev = e["case"], e["eval"]
        ng, gw = e["nginx"], e["gateway"]
        same = ng["reply"].classes() == gw["reply"].classes()
        t["same status class" if same else "different status class"] += 1
        refused = any(s >= 400 for s in ng["reply"].statuses)
        if refused and gw["seen"].requests > ng["seen"].requests:
            t["gateway forwarded what NGINX refused"] += 1
        t["smuggling (gateway)"] += "b" in ev["fails"]
        if not gw["reply"].statuses:
            t["gateway no answer, connection_unusable cases" if c.connection_unusable
              else "gateway no answer"] += 1
        t["NGINX no answer"] += not ng["reply"].statuses
        t["path not normalised (gateway)"] += "e" in ev["fails"]
        t["header checks failed (gateway)"] += "f" in ev["fails"]
        t["malformed head forwarded (gateway)"] += "g" in ev["fails"]
        t["known differences"] += c.id in KNOWN_DIFFERENCES
    return t


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def markdown(results: list[dict], tot: dict, failures: dict, meta: dict, strict: bool) -> str:
    out = ["# Differential run: NGINX vs RustyGate", "",
           f"{meta['date']} · NGINX {meta['nginx_version']} · gateway `{meta['gateway']}` "
           f"(built {meta['gateway_mtime']}) · {meta['cases']} cases · {meta['seconds']:.0f} s · "
           f"timeout {meta['timeout']} s", "",
           "| totals | cases |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in tot.items()]
    out += ["", "## Failed checks", ""]
    any_fail = False
    for letter, ids in failures.items():
        if not ids or (letter == "d" and not strict):
            continue
        any_fail = True
        out.append(f"* **({letter}) {CHECKS[letter]}** — {len(ids)}: " + ", ".join(f"`{i}`" for i in ids))
    if not any_fail:
        out.append("none")
    if failures["d"] and not strict:
        out += ["", "## Differences to document (status class; fail only with --strict)", "",
                ", ".join(f"`{i}`" for i in failures["d"])]
    if KNOWN_DIFFERENCES:
        out += ["", "## Known differences", ""]
        out += [f"* `{k}`: {v}" for k, v in KNOWN_DIFFERENCES.items()]
    out += ["", "## Cases", "",
            "Answers: status codes in order, `(closed)` when the proxy closed the connection. "
            "Backend: request lines received (a count when not one), notable headers and flags. "
            "Checks: the letters of the failed checks (see run.py).", ""]
    for cat, what in C.CATEGORIES.items():
        rows = [e for e in results if e["case"].category == cat]
        if not rows:
            continue
        out += [f"### {cat} ({len(rows)})", "", what, "",
                "| id | description | NGINX | NGINX → backend | gateway | gateway → backend | checks |",
                "|---|---|---|---|---|---|---|"]
        for e in rows:
            c, ev = e["case"], e["eval"]
            checks = " ".join(sorted(ev["fails"])) or "ok"
            if c.id in KNOWN_DIFFERENCES:
                checks += " (known)"
            out.append("| " + " | ".join(md_cell(x) for x in (
                f"`{c.id}`", c.description, e["nginx"]["reply"].summary(), e["nginx"]["seen"].summary(),
                e["gateway"]["reply"].summary(), e["gateway"]["seen"].summary(), checks)) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def result_json(results: list[dict], tot: dict, failures: dict, meta: dict) -> dict:
    def side(s: dict) -> dict:
        r, seen = s["reply"], s["seen"]
        return {"answer": r.summary(), "statuses": r.statuses, "status_lines": r.status_lines,
                "interim": r.interim, "closed": r.eof, "reset": r.reset, "timed_out": r.timed_out,
                "non_http": r.non_http, "send_error": r.send_error, "bytes_received": r.received,
                "first_bytes": r.head,
                "backend": {"requests": seen.requests, "connections": seen.connections,
                            "records": [rec.as_json(1024) for rec in seen.records],
                            "fragments": seen.fragments, "garbage": seen.garbage}}
    cases = []
    for e in results:
        c = e["case"]
        raw = b"".join(c.raw)
        cases.append({
            "id": c.id, "category": c.category, "description": c.description,
            "requests": c.requests, "answers": c.answers, "connection_unusable": c.connection_unusable,
            "raw": raw[:2048].decode("latin-1").encode("unicode_escape").decode("ascii")
                   + (f"... [{len(raw)} bytes]" if len(raw) > 2048 else ""),
            "nginx": side(e["nginx"]), "gateway": side(e["gateway"]),
            "failed": e["eval"]["fails"], "nginx_notes": e["eval"]["info"],
            "known_difference": KNOWN_DIFFERENCES.get(c.id),
        })
    return {"meta": meta, "totals": tot, "failures": failures, "checks": CHECKS, "cases": cases}


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def select(args) -> list[C.Case]:
    cases = C.CASES
    if args.category:
        cases = [c for c in cases if c.category in args.category]
    if args.only:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.id, p) for p in args.only)]
    return cases


def start_services(sup: Supervisor, args, nginx_bin: str, token: str, backends: list):
    """Backends (appended to `backends`, which the caller stops), NGINX and the gateway;
    returns the two targets."""
    nb = RecordingBackend("nginx-backend").start()
    backends.append(nb)
    gb = RecordingBackend("gateway-backend").start()
    backends.append(gb)

    _, nginx_port = nginx.start_nginx(sup, nginx_bin, HERE / "nginx.conf.tmpl",
                                      {"@BACKEND@": f"127.0.0.1:{nb.port}", "@GOOD_TOKEN@": NGINX_TOKEN},
                                      ready_path="/", timeout=15)

    # The gateway listens on ports the OS picks and reports them (services.start_gateway).
    tmpl = HERE / "gateway.yaml.tmpl"
    gconf = sup.workdir / "gateway.yaml"
    gconf.write_text(render(tmpl.read_text(), {
        "@LISTEN@": "127.0.0.1:0", "@ADMIN@": "127.0.0.1:0",
        "@BACKEND@": f"127.0.0.1:{gb.port}", "@SECRET@": JWT_SECRET}, tmpl.name))
    gw = services.start_gateway(sup, args.gateway, gconf, timeout=30)
    return [Target("nginx", nginx_port, nb, NGINX_TOKEN), Target("gateway", gw.addr["proxy"].port, gb, token)]


def main() -> int:
    default_gw = str(cargo_target_dir() / "debug" / "rustygate")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--gateway", default=default_gw, help=f"rustygate binary (default {default_gw})")
    ap.add_argument("--nginx", default=None, help="nginx binary (default: nginx on PATH or /usr/sbin)")
    ap.add_argument("--markdown", metavar="FILE", help="write the Markdown report here "
                    "(default scripts/differential/results/latest.md)")
    ap.add_argument("--json", metavar="FILE", help="write the JSON result here "
                    "(default scripts/differential/results/latest.json)")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for answers per case (default 2)")
    ap.add_argument("--strict", action="store_true", help="status-class differences (d) fail too")
    ap.add_argument("--only", nargs="+", metavar="PATTERN", help="case ids or shell patterns (`path-*`)")
    ap.add_argument("--category", nargs="+", choices=list(C.CATEGORIES), help="only these categories")
    ap.add_argument("--host", default=DEFAULT_HOST, help=f"value of {{HOST}} (default {DEFAULT_HOST})")
    ap.add_argument("--keep-workdir", action="store_true", help="keep configs and proxy logs (path printed)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--show", metavar="ID", help="print one case's bytes and exit")
    args = ap.parse_args()

    problems = C.check_corpus()
    if problems:
        log("corpus problems:\n  " + "\n  ".join(problems))
        return 2
    if args.list:
        for c in select(args):
            print(f"{c.id:40} {c.category:11} {c.description}")
        print(f"{len(select(args))} cases")
        return 0
    if args.show:
        match = [c for c in C.CASES if c.id == args.show]
        if not match:
            log(f"no case {args.show!r}")
            return 2
        c = match[0]
        print(f"{c.id} [{c.category}] {c.description}")
        print(f"requests={c.requests} answers={c.answers} methods={c.method_list()} "
              f"connection_unusable={c.connection_unusable} half_close={c.half_close}")
        for i, part in enumerate(c.raw, 1):
            print(f"--- write {i}: {len(part)} bytes")
            shown = part if len(part) <= 4096 else part[:4096]
            print(shown.decode("latin-1").encode("unicode_escape").decode("ascii").replace("\\n", "\\n\n"))
            if len(part) > 4096:
                print(f"... ({len(part) - 4096} more bytes)")
        return 0

    cases = select(args)
    if not cases:
        log("no case selected")
        return 2
    nginx_bin = find_tool("nginx", args.nginx)
    if not nginx_bin:
        log("nginx not found (install nginx-light, or pass --nginx)")
        return 2
    try:
        args.gateway = require_executable(args.gateway, "gateway binary", "build it with: cargo build -p rustygate")
    except SetupError as e:
        log(str(e))
        return 2
    token = mint_hs256(JWT_SECRET, {"sub": JWT_SUB, "exp": int(time.time()) + 3600})
    workdir = Path(tempfile.mkdtemp(prefix="rustygate-diff-"))
    started = time.monotonic()
    backends: list[RecordingBackend] = []
    try:
        # The supervisor stops NGINX (master and workers) and the gateway by PID on the way
        # out, also on an exception, Ctrl-C or SIGTERM.
        with Supervisor(workdir=workdir, keep_workdir=args.keep_workdir, grace=3.0) as sup:
            targets = start_services(sup, args, nginx_bin, token, backends)
            log(f"replaying {len(cases)} cases (nginx :{targets[0].port}, gateway :{targets[1].port})")
            results = run_cases(cases, targets, args.timeout, args.host)
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'Ctrl-C'}); NGINX and the gateway were stopped")
        return 130
    finally:
        for b in backends:
            b.stop()
        if args.keep_workdir:
            log(f"workdir kept: {workdir}")

    for e in results:
        e["eval"] = evaluate(e)
    failures = {k: [e["case"].id for e in results if k in e["eval"]["fails"]] for k in CHECKS}
    tot = totals(results)
    gw_stat = os.stat(args.gateway)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "nginx_version": nginx_version(nginx_bin), "gateway": args.gateway,
            "gateway_mtime": datetime.datetime.fromtimestamp(gw_stat.st_mtime).isoformat(timespec="seconds"),
            "cases": len(results), "seconds": time.monotonic() - started, "timeout": args.timeout,
            "strict": args.strict, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}

    out_dir = HERE / "results"
    md_path = Path(args.markdown) if args.markdown else out_dir / "latest.md"
    json_path = Path(args.json) if args.json else out_dir / "latest.json"
    for p in (md_path, json_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(results, tot, failures, meta, args.strict))
    json_path.write_text(json.dumps(result_json(results, tot, failures, meta), indent=1, ensure_ascii=False))

    # Console summary.
    print(f"\n{len(results)} cases in {meta['seconds']:.0f} s — NGINX {meta['nginx_version']}, gateway {args.gateway}")
    width = max(len(k) for k in tot)
    for k, v in tot.items():
        print(f"  {k:<{width}}  {v}")
    failed = False
    print()
    for letter, ids in failures.items():
        if not ids:
            continue
        blocking = letter != "d" or args.strict
        failed |= blocking
        label = "FAIL" if blocking else "NOTE"
        what = CHECKS[letter] if blocking else CHECKS[letter] + " — to document (use --strict to fail)"
        print(f"{label} ({letter}) {what}: {len(ids)}")
        for i in ids:
            e = next(x for x in results if x["case"].id == i)
            print(f"    {i:40} {e['eval']['fails'][letter]}")
    notes = [(e["case"].id, n) for e in results for n in e["eval"]["info"]]
    if notes:
        print(f"\nNGINX notes (corpus calibration, not failures): {len(notes)}")
        for i, n in notes:
            print(f"    {i:40} {n}")
    print(f"\nmarkdown: {md_path}\njson:     {json_path}")
    print("RESULT: " + ("FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
