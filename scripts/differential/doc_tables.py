#!/usr/bin/env python3
"""Renders the tables of docs/security.md from a differential run (results/latest.json):

* the path-normalisation table: for every `path` and `host` case, the request line, what
  NGINX and the gateway answered, and the target each one's backend received;
* the list of cases where the gateway's status class differs from NGINX's, by category.

    python3 scripts/differential/run.py            # writes results/latest.json
    python3 scripts/differential/doc_tables.py --update docs/security.md

With --update, the text between the markers `<!-- differential:NAME -->` and
`<!-- /differential:NAME -->` in the file is replaced; without it, the tables are printed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, code-formatted, shortened."""
    if text == "—":
        return text
    text = text.replace("|", "\\|")
    if len(text) > 70:
        text = text[:67] + "..."
    return f"`{text}`" if text else ""


def request_line(case: dict) -> str:
    return case["raw"].split("\\r\\n", 1)[0]


def received(side: dict) -> str:
    records = side["backend"]["records"]
    if not records:
        return "—"
    return ", ".join(r["target"] for r in records)


def answer(side: dict) -> str:
    return " ".join(str(s) for s in side["statuses"]) or "none"


def policy_table(cases: list[dict]) -> str:
    rows = ["| case | request line | NGINX | its backend got | gateway | its backend got |",
            "|---|---|---|---|---|---|"]
    for c in cases:
        if c["category"] not in ("path", "host"):
            continue
        n, g = c["nginx"], c["gateway"]
        rows.append(f"| {c['id']} | {cell(request_line(c))} | {answer(n)} | {cell(received(n))} "
                    f"| {answer(g)} | {cell(received(g))} |")
    return "\n".join(rows)


def status_class(side: dict) -> str:
    return " ".join(sorted({f"{s // 100}xx" for s in side["statuses"]})) or "none"


# Why the gateway differs from NGINX, by category (checked against each run's list).
REASONS = {
    "chunked": "an incomplete or bare-LF chunked body: actix refuses it (400) or the body timeout "
               "answers 408, where NGINX waits or accepts bare LF; nothing incomplete is forwarded.",
    "header": "actix's parser refuses control bytes and non-token names (400) and over 96 headers "
              "(431); NGINX ignores invalid header lines and has no count limit.",
    "host": "only DNS names and IP literals are accepted as Host, and an absolute-form host must agree "
            "with Host ([Host, method, head](#host-method-head)); NGINX is more lenient.",
    "method": "actix's request-line parser is strict (single spaces, HTTP/1.0 and 1.1 only), as RFC "
              "9112 allows; NGINX tolerates extra spaces and other minor versions.",
    "path": "ambiguous paths are refused by the [normalisation policy](#path-normalisation) (raw "
            "non-ASCII by actix); NGINX forwards them as they are.",
    "pipelining": "a request pipelined after `Connection: close` is answered 400 and not forwarded; "
                  "NGINX closes without answering it.",
    "smuggling": "NGINX answers 501 to a Transfer-Encoding it does not implement, the gateway 400: "
                 "both refuse and forward nothing (the tab cases are known differences above).",
    "upgrade": "an Upgrade request declaring a body is refused (actix would read the rest of the "
               "connection as its body); after an upgrade head, actix reads what follows as the "
               "upgraded stream, not as a second request (nothing more reaches the backend).",
}


def differences(cases: list[dict]) -> str:
    by_category: dict[str, list[str]] = {}
    for c in cases:
        n, g = status_class(c["nginx"]), status_class(c["gateway"])
        if n != g:
            by_category.setdefault(c["category"], []).append(
                f"`{c['id']}` (NGINX {n}, gateway {g}): {c['description']}")
    out = []
    for category, items in sorted(by_category.items()):
        reason = REASONS.get(category, "not explained yet: add a reason to REASONS in doc_tables.py")
        out.append(f"* **{category}** ({len(items)}): {reason}")
        out.extend(f"  * {i}" for i in items)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(HERE / "results" / "latest.json"))
    ap.add_argument("--update", metavar="FILE", help="replace the marked sections of FILE")
    args = ap.parse_args()
    data = json.loads(Path(args.results).read_text())
    tables = {"policy": policy_table(data["cases"]), "differences": differences(data["cases"])}
    if not args.update:
        for name, text in tables.items():
            print(f"## {name}\n\n{text}\n")
        return
    path = Path(args.update)
    doc = path.read_text()
    for name, text in tables.items():
        pattern = re.compile(rf"(<!-- differential:{name} -->\n).*?(<!-- /differential:{name} -->)", re.S)
        doc, n = pattern.subn(lambda m: m.group(1) + text + "\n" + m.group(2), doc)
        if n != 1:
            raise SystemExit(f"{path}: no markers for {name}")
    path.write_text(doc)


if __name__ == "__main__":
    main()
