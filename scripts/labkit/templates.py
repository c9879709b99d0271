"""Config templates with @NAME@ placeholders (NGINX and gateway configs)."""

from __future__ import annotations

import re

from .base import SetupError

_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def render(text: str, values: dict[str, str], source: str = "template") -> str:
    """Replaces the placeholders (`values` keys, e.g. "@LISTEN@") outside comment lines, where
    they stay as documentation; SetupError if a non-comment line keeps one."""
    out = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            for key, val in values.items():
                line = line.replace(key, val)
            if _PLACEHOLDER.search(line):
                raise SetupError(f"{source}: unreplaced placeholder in: {line.strip()}")
        out.append(line)
    return "\n".join(out) + "\n"
