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


def ca_signed(workdir: Path, name: str, san: str = "DNS:localhost,IP:127.0.0.1",
              days: int = 2) -> tuple[Path, Path, Path]:
    """A throwaway CA (`NAME-ca.pem`) and an ECDSA P-256 server certificate it signed
    (`NAME.pem`, `NAME.key`) for `san`, in `workdir`: for clients that verify (rustls refuses a
    self-signed CA certificate used as a server's). Returns (CA, certificate, key); readable by
    other users."""
    ca, ca_key = workdir / f"{name}-ca.pem", workdir / f"{name}-ca.key"
    cert, key, csr, ext = (workdir / f"{name}{s}" for s in (".pem", ".key", ".csr", ".ext"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", str(days),
         "-subj", f"/CN={name} test CA"],
        ["openssl", "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-out", str(cert), "-days", str(days), "-extfile", str(ext)],
    ]
    try:
        for argv in steps:
            subprocess.run(argv, check=True, capture_output=True, timeout=30, cwd=str(workdir))
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError(f"cannot make a test CA and certificate with openssl (apt-get install openssl): {e}") from None
    for f in (ca, cert, key):
        os.chmod(f, 0o644)
    return ca, cert, key
