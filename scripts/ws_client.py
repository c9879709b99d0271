#!/usr/bin/env python3
"""A WebSocket client from outside the project (the `websockets` library, PyPI) for the
gateway's tests, the demo and the benchmark. Prints one JSON object on stdout.

  echo URL --sessions N --messages M [--size S]   N concurrent sessions, each sending M
        numbered messages and checking every echo arrives, whole and in order
  big URL --size BYTES                            one binary message of BYTES, echo compared
  hold URL --sessions N [--timeout S] [--ready-file F]
        opens N sessions, writes F once all are open, then waits until the server closes each;
        reports the close codes received
  send URL --size BYTES                           sends one message and reports how the
                                                  session ended (e.g. 1009 for a frame too big)
  headers URL                                     the first message (the mock echo's handshake
                                                  headers with ?headers=1), as JSON
  throughput URL --sessions N --seconds T [--size S]
        messages echoed per second over N sessions (the benchmark)
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


def connect(url, **kw):
    # No size limit of the client's own: the gateway's limits are what is tested.
    return websockets.connect(url, max_size=None, open_timeout=10, close_timeout=5, compression=None, **kw)


def closed_code(exc):
    rcvd = getattr(exc, "rcvd", None)
    return rcvd.code if rcvd is not None else None


async def echo(args):
    lost = reordered = errors = 0
    messages = 0
    error_samples = []

    async def one(i):
        nonlocal lost, reordered, errors, messages
        try:
            async with connect(args.url) as ws:
                pad = "x" * max(0, args.size - 24)

                async def sender():
                    for n in range(args.messages):
                        await ws.send(f"{i}:{n}:{pad}")

                send_task = asyncio.create_task(sender())
                expected = 0
                for _ in range(args.messages):
                    msg = await asyncio.wait_for(ws.recv(), timeout=30)
                    s, n, _rest = msg.split(":", 2)
                    if int(s) != i or int(n) != expected:
                        reordered += 1
                    expected = int(n) + 1
                    messages += 1
                await send_task
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            errors += 1
            if len(error_samples) < 5:
                error_samples.append(f"{type(e).__name__}: {e}")

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.sessions)))
    lost = args.sessions * args.messages - messages
    return {
        "sessions": args.sessions,
        "messages": messages,
        "lost": lost,
        "reordered": reordered,
        "errors": errors,
        "error_samples": error_samples,
        "seconds": round(time.monotonic() - started, 3),
    }


async def big(args):
    data = os.urandom(1 << 20) * (args.size >> 20) + os.urandom(args.size & ((1 << 20) - 1))
    async with connect(args.url) as ws:
        started = time.monotonic()
        await ws.send(data)
        back = await asyncio.wait_for(ws.recv(), timeout=120)
        return {
            "sent": len(data),
            "received": len(back),
            "same": hashlib.sha256(back).digest() == hashlib.sha256(data).digest(),
            "seconds": round(time.monotonic() - started, 3),
        }


async def hold(args):
    codes = []
    opened = 0

    async def one():
        nonlocal opened
        async with connect(args.url) as ws:
            opened += 1
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed as e:
                codes.append(closed_code(e))

    tasks = [asyncio.create_task(one()) for _ in range(args.sessions)]
    while opened < args.sessions and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(str(opened))
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    errors = [f"{type(t.exception()).__name__}: {t.exception()}" for t in done if t.exception()]
    return {"opened": opened, "codes": codes, "still_open": len(pending), "errors": errors[:5]}


async def send(args):
    async with connect(args.url) as ws:
        try:
            await ws.send(b"\0" * args.size)
            back = await asyncio.wait_for(ws.recv(), timeout=30)
            return {"code": None, "echoed": len(back)}
        except ConnectionClosed as e:
            return {"code": closed_code(e), "echoed": None}


async def headers(args):
    try:
        async with connect(args.url, additional_headers=dict(h.split(":", 1) for h in args.header)) as ws:
            first = await asyncio.wait_for(ws.recv(), timeout=10)
            return {"status": 101, "headers": json.loads(first), "response_headers": dict(ws.response.headers)}
    except InvalidStatus as e:
        return {"status": e.response.status_code, "body": e.response.body.decode(errors="replace")}


async def throughput(args):
    deadline = time.monotonic() + args.seconds
    counts = []
    payload = "x" * args.size

    codes = []

    async def one():
        n = 0
        async with connect(args.url) as ws:
            try:
                while time.monotonic() < deadline:
                    await ws.send(payload)
                    await ws.recv()
                    n += 1
            except ConnectionClosed as e:
                codes.append(closed_code(e))
        counts.append(n)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.sessions)))
    elapsed = time.monotonic() - started
    return {
        "messages": sum(counts),
        "seconds": round(elapsed, 3),
        "per_second": round(sum(counts) / elapsed, 1),
        "closed_by_server": codes,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["echo", "big", "hold", "send", "headers", "throughput"])
    p.add_argument("url")
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--ready-file")
    p.add_argument("--header", action="append", default=[], help="NAME:VALUE, sent with the handshake")
    args = p.parse_args()
    result = asyncio.run(globals()[args.mode](args))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
