#!/usr/bin/env python3
"""A gRPC client from outside the project (grpcio, PyPI) for the gateway's tests and demo.

  call TARGET METHOD [--timeout S] [--metadata KEY=VALUE ...] [--payload TEXT]
      one unary call of METHOD (/package.Service/Method) on TARGET (host:port, cleartext
      HTTP/2), the request and answer as raw bytes (no generated stubs needed)

Prints one JSON object: {"ok": true, "response": ...} or {"ok": false, "code": "UNIMPLEMENTED",
"details": "...", "trailing": {...}}.
"""

import argparse
import json
import sys

import grpc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["call"])
    p.add_argument("target")
    p.add_argument("method")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("--payload", default="")
    args = p.parse_args()
    metadata = [tuple(m.split("=", 1)) for m in args.metadata]
    with grpc.insecure_channel(args.target) as channel:
        call = channel.unary_unary(args.method, request_serializer=None, response_deserializer=None)
        try:
            response = call(args.payload.encode(), timeout=args.timeout, metadata=metadata)
            result = {"ok": True, "response": response.decode(errors="replace")}
        except grpc.RpcError as e:
            result = {
                "ok": False,
                "code": e.code().name,
                "details": e.details(),
                "trailing": {k: v for k, v in (e.trailing_metadata() or [])},
            }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
