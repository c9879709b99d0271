"""Throwaway TLS material for the checks and load tests, made by the openssl command line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .base import SetupError


def self_signed(workdir: Path, name: str = "tls", san: str = "DNS:localhost,IP:127.0.0.1",
                days: int = 2) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate and key, `NAME.pem` and `NAME.key` in `workdir`,
    for `san`; readable by other users (NGINX's unprivileged workers read them)."""
    cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
                        "-subj", "/CN=localhost", "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError(f"cannot make a test certificate with openssl (apt-get install openssl): {e}") from None
    for f in (cert, key):
        os.chmod(f, 0o644)
    return cert, key
