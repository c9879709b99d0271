#!/usr/bin/env python3
"""Fails when the modules of a Rust crate import each other in a cycle.

`make lint` runs it over `gateway/src`. A module is a file (`a.rs`, `a/mod.rs`); module A
depends on module B when A names an item of B: a `use` (groups expanded), or a path in code
(`crate::b::f()`, `super::X`, `child::Y`). Declaring a child (`mod b;`) is not a dependency;
naming what it holds (`pub use b::X`) is. Code under `#[cfg(test)]` (inline test modules and
`tests.rs` files) is left out: tests may reach anywhere. Paths resolve to the deepest module
they name, so a re-export counts where it is written.

Every strongly connected component of more than one module is a cycle; each is printed with
one edge per line and the places that make it, and the exit status is 1. Standard library
only; it reads the source as text, which is enough for the crate's style of paths (it is an
equivalent of `cargo modules dependencies --acyclic` that needs no extra toolchain in CI).

`--self-test` checks the checker on small crates written to a temporary directory.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

KEYWORDS = {"crate", "super", "self"}
PATH_RE = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_RE = re.compile(r"\buse\s+([^;]+);", re.S)
SERDE_PATH_RE = re.compile(
    r"\b(?:deserialize_with|serialize_with|with|default|skip_serializing_if)\s*=\s*\"([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)\""
)
MOD_DECL_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)


def strip_comments_and_strings(src: str) -> str:
    """Source without comments, string and char literals (their text names no module)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]) or src.startswith("'\\u{", i):
            end = src.find("'", i + 2)
            out.append("' '")
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_code(src: str) -> str:
    """Removes items under `#[cfg(test)]` (an inline module or a single item)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", src)
        if not m:
            return src
        i = m.end()
        # The item ends at its first `;` before any `{`, or at the brace matching its first `{`.
        j = i
        while j < len(src) and src[j] not in "{;":
            j += 1
        if j >= len(src) or src[j] == ";":
            src = src[:m.start()] + src[j + 1:]
            continue
        depth = 0
        while j < len(src):
            if src[j] == "{":
                depth += 1
            elif src[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        src = src[:m.start()] + src[j + 1:]


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (renames and globs trimmed)."""
    tree = re.sub(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*", "", tree)  # renames name the same item
    tree = re.sub(r"\s+", "", tree)

    def parse(s: str, prefix: str) -> list[str]:
        paths, depth, start = [], 0, 0
        parts = []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in filter(None, parts):
            brace = part.find("{")
            if brace >= 0:
                head = part[:brace].rstrip(":")
                inner = part[brace + 1:part.rfind("}")]
                paths += parse(inner, f"{prefix}{head}::" if head else prefix)
            else:
                paths.append(prefix + part.rstrip(":*").rstrip(":"))
        return paths

    return [p for p in parse(tree, "") if p]


class Crate:
    """The module tree of a crate rooted at `src/lib.rs` or `src/main.rs`."""

    def __init__(self, src: Path, root_file: str = "lib.rs"):
        self.src = src
        self.files: dict[tuple[str, ...], Path] = {}
        self._walk((), src / root_file)

    def _walk(self, module: tuple[str, ...], file: Path) -> None:
        self.files[module] = file
        text = strip_comments_and_strings(file.read_text(encoding="utf-8"))
        text = drop_test_code(text)
        base = file.parent if file.name in ("lib.rs", "main.rs", "mod.rs") else file.parent / file.stem
        for name in MOD_DECL_RE.findall(text):
            for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
                if candidate.exists():
                    self._walk(module + (name,), candidate)
                    break

    def children(self, module: tuple[str, ...]) -> set[str]:
        n = len(module)
        return {m[n] for m in self.files if len(m) == n + 1 and m[:n] == module}

    def resolve(self, module: tuple[str, ...], path: str) -> tuple[str, ...] | None:
        """The deepest module that `path`, written in `module`, names (None: another crate)."""
        segs = path.split("::")
        if segs[0] == "crate":
            cur, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            cur = module
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    cur = cur[:-1]
                segs = segs[1:]
        elif segs[0] in self.children(module):
            cur = module
        else:
            return None  # an external crate or a name in scope, not a module path
        for seg in segs:
            if seg in self.children(cur):
                cur = cur + (seg,)
            else:
                break
        return cur

    def edges(self) -> dict[tuple[str, ...], dict[tuple[str, ...], list[str]]]:
        """module → module it depends on → the places (file:line) that make the edge."""
        graph: dict[tuple[str, ...], dict[tuple[str, ...], list[str]]] = defaultdict(lambda: defaultdict(list))
        for module, file in self.files.items():
            if file.name == "tests.rs":
                continue
            raw = file.read_text(encoding="utf-8")
            text = drop_test_code(strip_comments_and_strings(raw))
            rel = file.relative_to(self.src.parent) if self.src.parent in file.parents else file
            found: list[tuple[str, int]] = []
            for m in USE_RE.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found += [(p, line) for p in expand_use(m.group(1))]
            for m in PATH_RE.finditer(text):
                found.append((m.group(1), text.count("\n", 0, m.start()) + 1))
            # Paths serde takes as strings (`deserialize_with = "units::lenient_u32"`).
            for m in SERDE_PATH_RE.finditer(drop_test_code(raw)):
                found.append((m.group(1), raw.count("\n", 0, m.start()) + 1))
            # Modules imported by name (`use crate::p;` then `p::d::serve()`).
            aliases = {}
            for path, _ in list(found):
                target = self.resolve(module, path)
                if target and target != module and target[-1:] == (path.split("::")[-1],):
                    aliases[target[-1]] = target
            # Bare paths in code through a child or an imported module (`ctx::RequestCtx`).
            heads = sorted(self.children(module) | set(aliases))
            if heads:
                for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + "|".join(heads) + r")((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
                    line = text.count("\n", 0, m.start()) + 1
                    head, rest = m.group(1), m.group(2)
                    if head in aliases:
                        found.append(("crate::" + "::".join(aliases[head]) + rest, line))
                    else:
                        found.append((head + rest, line))
            for path, line in found:
                target = self.resolve(module, path)
                if target is None or target == module:
                    continue
                graph[module][target].append(f"{rel}:{line}")
        return graph


def cycles(graph) -> list[list[tuple[str, ...]]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    nodes = set(graph) | {t for ts in graph.values() for t in ts}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def name(module: tuple[str, ...]) -> str:
    return "::".join(("crate",) + module)


def check(src: Path, root_file: str = "lib.rs", quiet: bool = False) -> int:
    crate = Crate(src, root_file)
    graph = crate.edges()
    found = cycles(graph)
    for comp in found:
        print(f"import cycle among {len(comp)} modules: {', '.join(name(m) for m in comp)}")
        members = set(comp)
        for a in comp:
            for b, places in sorted(graph[a].items()):
                if b in members:
                    print(f"  {name(a)} -> {name(b)}   ({', '.join(places[:3])}{' …' if len(places) > 3 else ''})")
    if not quiet:
        edges = sum(len(ts) for ts in graph.values())
        verdict = f"{len(found)} cycle(s)" if found else "no import cycle"
        print(f"check_module_cycles: {len(crate.files)} modules, {edges} dependencies, {verdict}")
    return 1 if found else 0


def self_test() -> int:
    """The checker finds a planted cycle and passes a layered crate."""
    cases = {
        "cycle through a use group": ({
            "lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
            "a.rs": "use crate::{b::{self, B}, c};\n",
            "b.rs": "pub struct B;\nfn f() { crate::c::g(); }\n",
            "c.rs": "pub fn g() {}\nuse super::a::A as _;\nuse super::{b::passive as p};\n",
        }, 1),
        "parent re-exports a child that uses the parent": ({
            "lib.rs": "pub mod p;\n",
            "p/mod.rs": "mod k;\npub use k::K;\npub const X: u8 = 1;\n",
            "p/k.rs": "pub struct K;\nconst Y: u8 = super::X;\n",
        }, 1),
        "a module imported by name, then used through it": ({
            "lib.rs": "pub mod p;\npub mod q;\n",
            "p/mod.rs": "pub mod d;\n",
            "p/d.rs": "pub fn serve() { crate::q::f(); }\n",
            "q.rs": "use crate::p;\npub fn f() {}\nfn g() { p::d::serve(); }\n",
        }, 1),
        "a path serde takes as a string": ({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "pub fn de() {}\nfn h() { crate::b::x(); }\n",
            "b.rs": "pub fn x() {}\n#[serde(deserialize_with = \"crate::a::de\")]\nstruct S;\n",
        }, 1),
        "layered, with test code and comments that would cycle": ({
            "lib.rs": "pub mod low;\npub mod high;\n",
            "low.rs": "// crate::high::H\npub struct L;\nconst S: &str = \"crate::high::x\";\n"
                      "#[cfg(test)]\nmod tests { use crate::high::H; }\n",
            "high.rs": "use crate::low::L;\npub struct H(L);\n",
        }, 0),
    }
    failed = 0
    for label, (files, want) in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "src"
            for rel, text in files.items():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_text(text)
            got = check(src, quiet=True)
        ok = got == want
        failed += not ok
        print(f"self-test {'PASS' if ok else 'FAIL'}: {label} (exit {got}, want {want})")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", default="gateway/src", help="the crate's src directory")
    ap.add_argument("--self-test", action="store_true", help="check the checker on planted cycles")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    return check(Path(args.src))


if __name__ == "__main__":
    sys.exit(main())
