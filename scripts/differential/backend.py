#!/usr/bin/env python3
"""Recording HTTP/1.1 backend for the differential corpus (scripts/differential/run.py).

It answers every request it can frame with a small `200 OK` and keeps the connection open, and
records, per connection, the exact bytes of every request head and body it received. The runner
reads those records to tell whether a case reached the backend, how many requests it became
(two requests where the client sent one = smuggling) and what exactly was forwarded.

Framing is parsed just enough to split requests, and deliberately *leniently*, like a naive
backend would (the point is to expose what a proxy lets through, not to be a correct server):

  * a request uses chunked framing if ANY `Transfer-Encoding` header contains the token
    `chunked` anywhere (case-insensitive, surrounding junk such as tabs or \\v ignored);
  * otherwise the first `Content-Length` whose value starts with digits gives the length
    (`+5`, `5x`, `5, 7` all read as 5);
  * otherwise the request has no body.

What a correct proxy should never forward is noted on the record as `flags` (both
Content-Length and Transfer-Encoding, several Content-Length values, a Content-Length that is
not plain digits, a Transfer-Encoding that is not exactly `chunked`, obs-fold lines, bare LF
line endings, header names with whitespace or underscores, control bytes in values, …).

Bytes that cannot be framed (a chunk size that is not hex, a head over 1 MiB) are kept as
`garbage` on the connection, which is then closed. A head that has started but not finished is
visible as a `fragment` while the connection is open (see RecordingBackend.snapshot).

Python 3.11 standard library only; listens on loopback only. Standalone use, printing one JSON
line per request received:

    python3 scripts/differential/backend.py --port 18101
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field

MAX_HEAD = 1024 * 1024      # a head larger than this is garbage
IDLE_CLOSE = 30.0           # an idle connection is closed after this many seconds
RECV_POLL = 0.2             # recv timeout, so that stop() is noticed promptly

_HEX = re.compile(rb"[0-9a-fA-F]+")
_DIGITS = re.compile(rb"\s*(\d+)")


@dataclass
class Record:
    """One request as the backend saw it."""
    seq: int                    # global order of arrival at this backend
    conn: int                   # connection number (1, 2, ...)
    index: int                  # request number within its connection (1, 2, ...)
    t: float                    # time.monotonic() when the head was complete
    head: bytes                 # the exact head bytes, up to and including the blank line
    request_line: str           # first line, latin-1 decoded
    method: str
    target: str
    version: str
    headers: list               # [(name, value)] latin-1 decoded, as received
    framing: str                # "none" | "length" | "chunked"
    body: bytearray = field(default_factory=bytearray)  # the body bytes (chunked: the raw chunks)
    body_complete: bool = False
    flags: list = field(default_factory=list)

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n.strip().lower() == name]

    def as_json(self, max_bytes: int = 4096) -> dict:
        """A JSON-friendly view; large heads and bodies are cut (their full lengths are given)."""
        return {
            "seq": self.seq, "conn": self.conn, "index": self.index,
            "request_line": self.request_line, "method": self.method, "target": self.target,
            "version": self.version, "headers": self.headers, "framing": self.framing,
            "head_len": len(self.head), "head": _show(self.head, max_bytes),
            "body_len": len(self.body), "body": _show(bytes(self.body), max_bytes),
            "body_complete": self.body_complete, "flags": self.flags,
        }


def _show(data: bytes, limit: int) -> str:
    """Readable escaped form of raw bytes (\\r, \\n, \\xNN), cut at `limit` bytes."""
    cut = data[:limit]
    text = cut.decode("latin-1").encode("unicode_escape").decode("ascii")
    return text + (f"... [{len(data)} bytes]" if len(data) > limit else "")


def _head_flags(lines: list[bytes], bare_lf: bool) -> list[str]:
    """Things in a received head that a correct proxy does not forward."""
    flags = []
    if bare_lf:
        flags.append("bare-LF line endings")
    cl, te = [], []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            flags.append("obs-fold line")
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            flags.append("header line without colon")
            continue
        if name != name.strip(b" \t") or b" " in name or b"\t" in name:
            flags.append("whitespace in header name")
        if b"_" in name:
            flags.append(f"underscore header {name.decode('latin-1')}")
        if any(c < 0x20 and c != 0x09 or c == 0x7F for c in value):
            flags.append(f"control byte in {name.decode('latin-1')} value")
        lname = name.strip().lower()
        if lname == b"content-length":
            cl.append(value.strip(b" \t"))
        elif lname == b"transfer-encoding":
            te.append(value.strip(b" \t"))
    if len(cl) > 1:
        flags.append("several Content-Length headers")
    if any(not v.isdigit() for v in cl):
        flags.append("Content-Length not plain digits")
    if cl and te:
        flags.append("both Content-Length and Transfer-Encoding")
    if len(te) > 1:
        flags.append("several Transfer-Encoding headers")
    if any(v.lower() != b"chunked" for v in te):
        flags.append("Transfer-Encoding other than exactly chunked")
    return flags


class _Conn:
    """State of one accepted connection (used only by its own thread, plus snapshot reads)."""

    def __init__(self, number: int, sock: socket.socket):
        self.number = number
        self.sock = sock
        self.buf = bytearray()        # received bytes not yet consumed by a complete request
        self.requests = 0
        self.current: Record | None = None   # request whose body is still arriving
        self.body_state = None               # bytes left (length) or chunk parser state (chunked)
        self.garbage = b""
        self.last_activity = time.monotonic()
        self.closed = False


class RecordingBackend:
    """A threaded loopback server; `records` grows as requests arrive (guarded by `lock`)."""

    def __init__(self, label: str = "backend", host: str = "127.0.0.1", port: int = 0,
                 on_record=None):
        self.label = label
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.conns: list[_Conn] = []
        self.last_activity = 0.0
        self.on_record = on_record
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self._listener.settimeout(RECV_POLL)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "RecordingBackend":
        t = threading.Thread(target=self._accept_loop, name=f"{self.label}-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(timeout=2.0)
        self._listener.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.sock.close()
                except OSError:
                    pass

    # -- queries used by the runner ----------------------------------------------------------
    def mark(self) -> tuple[int, int, float]:
        """A position to pass to snapshot(): (records so far, connections so far, now)."""
        with self.lock:
            return len(self.records), len(self.conns), time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last byte was received or a connection was accepted."""
        with self.lock:
            return time.monotonic() - self.last_activity

    def snapshot(self, mark: tuple[int, int, float]) -> dict:
        """Everything that arrived after `mark`: records, the number of new connections, and,
        for connections active since then, an unfinished head (`fragments`) and unframeable
        bytes (`garbage`)."""
        rec_mark, conn_mark, t_mark = mark
        with self.lock:
            active = [c for c in self.conns if c.last_activity >= t_mark]
            fragments = [{"conn": c.number, "bytes": _show(bytes(c.buf), 2048), "len": len(c.buf)}
                         for c in active if c.buf and c.current is None]
            garbage = [{"conn": c.number, "bytes": _show(c.garbage, 2048), "len": len(c.garbage)}
                       for c in active if c.garbage]
            return {"records": list(self.records[rec_mark:]),
                    "connections": len(self.conns) - conn_mark,
                    "fragments": fragments, "garbage": garbage}

    # -- internals ---------------------------------------------------------------------------
    def _touch(self, conn: _Conn) -> None:
        now = time.monotonic()
        conn.last_activity = now
        self.last_activity = now

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(RECV_POLL)
            with self.lock:
                conn = _Conn(len(self.conns) + 1, sock)
                self.conns.append(conn)
                self._touch(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name=f"{self.label}-c{conn.number}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: _Conn) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = conn.sock.recv(65536)
                except socket.timeout:
                    if time.monotonic() - conn.last_activity > IDLE_CLOSE:
                        return
                    continue
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    conn.buf += data
                    self._touch(conn)
                if not self._progress(conn):
                    return
        finally:
            conn.closed = True
            try:
                conn.sock.close()
            except OSError:
                pass

    def _progress(self, conn: _Conn) -> bool:
        """Consume as many complete requests as the buffer holds. False = close the connection."""
        while True:
            if conn.current is None:
                # Skip blank lines between requests (RFC 9112 §2.2 robustness).
                while conn.buf[:2] == b"\r\n" or conn.buf[:1] == b"\n":
                    del conn.buf[:2 if conn.buf[:2] == b"\r\n" else 1]
                if not conn.buf:
                    return True
                if not self._start_request(conn):
                    return not conn.garbage
            done = self._read_body(conn)
            if done is None:          # unframeable body: stop here
                return False
            if not done:              # wait for more bytes
                return True
            rec = conn.current
            rec.body_complete = True
            conn.current = None
            conn.body_state = None
            if not self._answer(conn, rec):
                return False

    def _start_request(self, conn: _Conn) -> bool:
        """Parse a head if one is complete; returns True when conn.current was set."""
        buf = conn.buf
        crlf = buf.find(b"\r\n\r\n")
        lf = buf.find(b"\n\n")
        if crlf < 0 and lf < 0:
            if len(buf) > MAX_HEAD:
                with self.lock:
                    conn.garbage = bytes(buf)
                    buf.clear()
            return False
        if crlf >= 0 and (lf < 0 or crlf <= lf):
            end, bare_lf = crlf + 4, False
        else:
            end, bare_lf = lf + 2, True
        head = bytes(buf[:end])
        del buf[:end]
        lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in head.rstrip(b"\r\n").split(b"\n")]
        bare_lf = bare_lf or any(not ln.endswith(b"\r") for ln in head.split(b"\n")[:-2])
        parts = lines[0].split(b" ")
        method = parts[0].decode("latin-1")
        target = parts[1].decode("latin-1") if len(parts) > 1 else ""
        version = parts[-1].decode("latin-1") if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        te = [v for n, v in headers if n.strip().lower() == "transfer-encoding"]
        cl = [v for n, v in headers if n.strip().lower() == "content-length"]
        framing = "none"
        if any("chunked" in v.lower() for v in te):
            framing = "chunked"
        elif cl:
            m = _DIGITS.match(cl[0].encode("latin-1"))
            framing = "length"
            conn.body_state = int(m.group(1)) if m else 0
        with self.lock:
            conn.requests += 1
            rec = Record(seq=len(self.records) + 1, conn=conn.number, index=conn.requests,
                         t=time.monotonic(), head=head, request_line=lines[0].decode("latin-1"),
                         method=method, target=target, version=version, headers=headers,
                         framing=framing, flags=_head_flags(lines, bare_lf))
            self.records.append(rec)
            conn.current = rec
        if framing == "chunked":
            conn.body_state = {"phase": "size", "left": 0}
        if framing != "none" and any(v.lower() == "100-continue" for n, v in headers
                                     if n.strip().lower() == "expect") and not buf:
            self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.on_record:
            self.on_record(rec)
        return True

    def _read_body(self, conn: _Conn):
        """Move body bytes from the buffer to the record. True = complete, False = need more,
        None = unframeable (the rest is kept as garbage)."""
        rec, buf = conn.current, conn.buf
        if rec.framing == "none":
            return True
        if rec.framing == "length":
            take = min(conn.body_state, len(buf))
            with self.lock:
                rec.body += buf[:take]
            del buf[:take]
            conn.body_state -= take
            return conn.body_state == 0
        st = conn.body_state
        while True:
            if st["phase"] == "data":
                take = min(st["left"], len(buf))
                with self.lock:
                    rec.body += buf[:take]
                del buf[:take]
                st["left"] -= take
                if st["left"]:
                    return False
                st["phase"] = "data-crlf"
            if st["phase"] == "data-crlf":
                if len(buf) < 2:
                    return False
                if buf[:2] != b"\r\n":
                    return self._garbage(conn, "chunk data not followed by CRLF")
                with self.lock:
                    rec.body += buf[:2]
                del buf[:2]
                st["phase"] = "size"
            nl = buf.find(b"\n")
            if nl < 0:
                return False
            line = bytes(buf[:nl + 1])
            if st["phase"] == "size":
                m = _HEX.match(line.strip(b" \t"))
                if not m:
                    return self._garbage(conn, "chunk size is not hex")
                size = int(m.group(0), 16)
                with self.lock:
                    rec.body += line
                del buf[:nl + 1]
                if size == 0:
                    st["phase"] = "trailers"
                else:
                    st["phase"], st["left"] = "data", size
            else:  # trailers: lines until an empty one
                with self.lock:
                    rec.body += line
                del buf[:nl + 1]
                if line in (b"\r\n", b"\n"):
                    return True

    def _garbage(self, conn: _Conn, why: str):
        with self.lock:
            conn.current.flags.append(f"unframeable body: {why}")
            conn.garbage = bytes(conn.buf)
            conn.buf.clear()
        return None

    def _answer(self, conn: _Conn, rec: Record) -> bool:
        body = b"" if rec.method == "HEAD" else b"ok\n"
        conn_hdr = ",".join(rec.header_values("connection")).lower()
        close = "close" in conn_hdr or (rec.version == "HTTP/1.0" and "keep-alive" not in conn_hdr)
        resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                + f"X-Recorded: {self.label} {rec.conn}.{rec.index}\r\n".encode()
                + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)
        return self._send(conn, resp) and not close

    def _send(self, conn: _Conn, data: bytes) -> bool:
        try:
            conn.sock.sendall(data)
            return True
        except OSError:
            return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=18101)
    ap.add_argument("--seconds", type=float, default=3600.0, help="stop after this long (default 1 h)")
    args = ap.parse_args()

    def show(rec: Record) -> None:
        print(json.dumps(rec.as_json()), flush=True)

    backend = RecordingBackend("backend", port=args.port, on_record=show).start()
    print(f"recording backend on 127.0.0.1:{backend.port}", flush=True)
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        backend.stop()


if __name__ == "__main__":
    main()
