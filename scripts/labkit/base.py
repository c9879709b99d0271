"""What every labkit module shares: the setup error and progress output."""

from __future__ import annotations

import sys


class SetupError(RuntimeError):
    """A problem the user must fix before a check can run (a missing binary, a child that would
    not start, a port taken): the scripts report it and exit 2, never as a test failure."""


def log(msg: str) -> None:
    """Progress messages go to stderr so that stdout stays clean (reports, markdown)."""
    print(msg, file=sys.stderr, flush=True)
