"""HS256 JSON Web Tokens with the standard library (what `rustygate token` mints)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def mint_hs256(secret: str, claims: dict) -> str:
    """A compact HS256 JWT of `claims` signed with `secret`."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = header + b"." + payload
    signature = _b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()
