"""Locating the project's binaries (built by cargo) and the system tools the checks use."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .base import SetupError


def cargo_target_dir() -> Path:
    """$CARGO_TARGET_DIR, else the Makefile's default ~/.cache/rustygate-target."""
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rustygate-target"


def default_bin(name: str, profile: str = "release") -> str:
    """Where cargo puts binary `name` for `profile` (debug or release)."""
    return str(cargo_target_dir() / profile / name)


def require_executable(path: str, what: str, hint: str = "") -> str:
    """`path` if it is an executable file, else SetupError naming `what` (and the `hint`)."""
    p = Path(path).expanduser()
    if not p.is_file() or not os.access(p, os.X_OK):
        msg = f"{what} not found or not executable: {p}"
        if hint:
            msg += f" ({hint})"
        raise SetupError(msg)
    return str(p)


def find_tool(name: str, explicit: str | None = None) -> str | None:
    """A system tool: `explicit` if given (None if not executable), else from PATH or the sbin
    directories, which are not on every user's PATH (Debian's nginx is /usr/sbin/nginx)."""
    if explicit:
        p = Path(explicit).expanduser()
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def require_tool(name_or_path: str, what: str, hint: str = "") -> str:
    """A path (with a slash) must be executable; a bare name is looked up like find_tool."""
    if os.sep in name_or_path:
        return require_executable(name_or_path, what, hint)
    found = find_tool(name_or_path)
    if not found:
        raise SetupError(f"{what} not found: {name_or_path}" + (f" ({hint})" if hint else ""))
    return found


def tool_version(argv: list) -> str | None:
    """The first line a `--version`-like command prints (stdout, then stderr); None if it
    cannot run."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0] if text else None


def add_binary_args(ap, *, gateway: bool = True) -> None:
    """The --profile / --gateway-bin / --mock-bin flags of the load-test scripts."""
    ap.add_argument("--profile", choices=("release", "debug"), default="release",
                    help="cargo profile used for the default binary paths "
                         "($CARGO_TARGET_DIR/<profile>/..., CARGO_TARGET_DIR defaults to "
                         "~/.cache/rustygate-target) (default: release)")
    if gateway:
        ap.add_argument("--gateway-bin", default=None,
                        help="rustygate binary (default: $CARGO_TARGET_DIR/<profile>/rustygate)")
    ap.add_argument("--mock-bin", default=None,
                    help="mock-backend binary (default: $CARGO_TARGET_DIR/<profile>/mock-backend)")


def resolve_binaries(args, *, gateway: bool = True) -> None:
    """Fills in the defaults of add_binary_args' flags and checks the binaries exist."""
    release = "--release " if args.profile == "release" else ""
    if gateway:
        args.gateway_bin = require_executable(args.gateway_bin or default_bin("rustygate", args.profile),
                                              "gateway binary", f"build it with: cargo build {release}-p rustygate")
    args.mock_bin = require_executable(args.mock_bin or default_bin("mock-backend", args.profile),
                                       "mock backend binary", f"build it with: cargo build {release}-p mock-backends")
