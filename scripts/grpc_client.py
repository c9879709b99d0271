#!/usr/bin/env python3
"""gRPC from outside the project (grpcio, PyPI) for the gateway's tests and demo: a client, and
a reference echo server. Messages are raw bytes (no generated stubs needed).

  call TARGET METHOD [--timeout S] [--metadata KEY=VALUE ...] [--payload TEXT]
      one unary call of METHOD (/package.Service/Method) on TARGET (host:port, cleartext HTTP/2)
  kinds TARGET [--prefix /rustygate.test.Echo]
      the four call kinds against the echo server (through TARGET): unary, server streaming,
      client streaming, bidirectional; each one's answer, status and trailing metadata
  serve --port-file F
      the echo server on 127.0.0.1 (a free port, written to F), until killed: Unary echoes,
      ServerStream answers "PAYLOAD i" for i < 5, ClientStream joins what it got with "+",
      Bidi echoes each message, Fail aborts with NOT_FOUND, Forever streams a message every
      100 ms until the call ends; every call but Forever sends the trailing metadata
      x-echo-trailer: yes; and grpc.health.v1.Health/Check: SERVING, NOT_SERVING for a service
      whose name contains "down"
  forever TARGET [--timeout S]
      a Forever call: how many messages came and how it ended (the server killed meanwhile)

Prints one JSON object (call, kinds).
"""

import argparse
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "rustygate.test.Echo"


def rpc_error(e: grpc.RpcError) -> dict:
    return {"ok": False, "code": e.code().name, "details": e.details(),
            "trailing": {k: v for k, v in (e.trailing_metadata() or [])}}


def call(args) -> dict:
    metadata = [tuple(m.split("=", 1)) for m in args.metadata]
    with grpc.insecure_channel(args.target) as channel:
        stub = channel.unary_unary(args.method, request_serializer=None, response_deserializer=None)
        try:
            response = stub(args.payload.encode(), timeout=args.timeout, metadata=metadata)
            return {"ok": True, "response": response.decode(errors="replace")}
        except grpc.RpcError as e:
            return rpc_error(e)


def kinds(args) -> dict:
    p = args.prefix
    out = {}
    with grpc.insecure_channel(args.target) as channel:
        def run(name, fn):
            try:
                value, c = fn()
                out[name] = {"ok": True, "value": value, "code": c.code().name,
                             "trailing": {k: v for k, v in (c.trailing_metadata() or [])}}
            except grpc.RpcError as e:
                out[name] = rpc_error(e)

        unary = channel.unary_unary(f"{p}/Unary", request_serializer=None, response_deserializer=None)
        run("unary", lambda: (lambda r: (r[0].decode(), r[1]))(unary.with_call(b"hello", timeout=10)))

        def server_stream():
            it = channel.unary_stream(f"{p}/ServerStream", request_serializer=None,
                                      response_deserializer=None)(b"part", timeout=10)
            return [m.decode() for m in it], it
        run("server_streaming", server_stream)

        client = channel.stream_unary(f"{p}/ClientStream", request_serializer=None, response_deserializer=None)
        run("client_streaming",
            lambda: (lambda r: (r[0].decode(), r[1]))(client.with_call(iter([b"a", b"b", b"c"]), timeout=10)))

        def bidi():
            # One message at a time, each echo awaited before the next is sent: a full-duplex
            # exchange through the gateway, not a buffered one.
            import queue
            q = queue.Queue()

            def requests():
                for i in range(5):
                    yield f"m{i}".encode()
                    q.get(timeout=10)
            it = channel.stream_stream(f"{p}/Bidi", request_serializer=None,
                                       response_deserializer=None)(requests(), timeout=10)
            got = []
            for m in it:
                got.append(m.decode())
                q.put(None)
            return got, it
        run("bidi_streaming", bidi)

        fail = channel.unary_unary(f"{p}/Fail", request_serializer=None, response_deserializer=None)
        run("fail", lambda: (fail(b"x", timeout=10), None))
    return out


def forever(args) -> dict:
    """A server-streaming call that never ends by itself: how it ends when the server goes."""
    with grpc.insecure_channel(args.target) as channel:
        it = channel.unary_stream(f"{args.prefix}/Forever", request_serializer=None,
                                  response_deserializer=None)(b"", timeout=args.timeout)
        got = 0
        try:
            for _ in it:
                got += 1
            return {"ok": True, "messages": got, "code": it.code().name}
        except grpc.RpcError as e:
            return {"messages": got} | rpc_error(e)


def serve(args) -> None:
    trailer = (("x-echo-trailer", "yes"),)

    def unary(request, context):
        context.set_trailing_metadata(trailer)
        return request

    def server_stream(request, context):
        context.set_trailing_metadata(trailer)
        for i in range(5):
            yield request + f" {i}".encode()

    def client_stream(requests, context):
        context.set_trailing_metadata(trailer)
        return b"+".join(requests)

    def bidi(requests, context):
        context.set_trailing_metadata(trailer)
        for r in requests:
            yield r

    def fail(request, context):
        context.set_trailing_metadata(trailer)
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def forever(request, context):
        i = 0
        while context.is_active():
            yield f"tick {i}".encode()
            i += 1
            time.sleep(0.1)

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Forever": grpc.unary_stream_rpc_method_handler(forever),
    }
    def health(request, context):
        # grpc.health.v1.HealthCheckResponse: SERVING (1), or NOT_SERVING (2) for a service
        # whose name contains "down".
        return b"\x08\x02" if b"down" in request else b"\x08\x01"

    health_handlers = {"Check": grpc.unary_unary_rpc_method_handler(health)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),
                                     grpc.method_handlers_generic_handler("grpc.health.v1.Health", health_handlers)))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(args.port_file, "w") as f:
        f.write(str(port))
    while True:
        time.sleep(3600)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["call", "kinds", "forever", "serve"])
    p.add_argument("target", nargs="?")
    p.add_argument("method", nargs="?")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("--payload", default="")
    p.add_argument("--prefix", default=f"/{SERVICE}")
    p.add_argument("--port-file")
    args = p.parse_args()
    if args.mode == "serve":
        serve(args)
        return 0
    result = {"call": call, "kinds": kinds, "forever": forever}[args.mode](args)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
