"""The differential corpus: hostile HTTP/1.1 requests, replayed byte for byte through NGINX and
through the gateway by scripts/differential/run.py.

Every case is a `Case` with an id, a category, a one-line description and the raw bytes sent
on a fresh client connection. `python3 scripts/differential/run.py --list` prints them all;
`--show ID` prints one case's bytes.

Placeholders, replaced by the runner in the raw bytes:
  {HOST}   the Host used by ordinary cases (`diff.test`; both proxies accept any host)
  {TOKEN}  a valid credential for /api: for the gateway an HS256 JWT minted by the runner
           (sub = diff-user), for NGINX the literal `good-token` its config expects
Placeholders change lengths, so they must never be inside a body whose length is declared:
bodies spell the host out (`diff.test`) and never carry a token. `check_corpus()` enforces it
for bodies built with `msg(..., body=...)`.

The layout both proxies present (run.py renders the configs):
  /pub     public, to the recording backend
  /api     needs the token; the gateway's JWT policy sends claim `sub` as X-User-Id, NGINX sets
           `X-User-Id: diff-user` (so both backends see the same trusted header)
  /strip   strip_prefix to the backend base path /base (/strip/x -> /base/x)
  /vhost   Host internal.test: needs the token (like /api); any other Host: public
  /        GET / answers 200 itself; anything else without a route is 404

Fields of a case (see `Case`):
  requests             the most requests a correct proxy may forward to the backend (what the
                       client means to send; a smuggled request inside a body does not count)
  answers              final responses a correct proxy sends when it accepts everything
  methods              request methods in order (the response parser needs to know about HEAD);
                       default: the first token of the bytes, for every answer
  connection_unusable  the request is deliberately incomplete (a proxy may wait for the rest), so
                       no answer within the timeout is acceptable
  half_close           shut down the client's sending side after the bytes (EOF to the proxy)
  forbid / require     regular expressions (bytes, case-insensitive, multi-line) that must not /
                       must match every request head the gateway's backend receives

To add a case: call `case(...)` in the right section below with a new id; run `--show ID` to
check the bytes and `--only ID` to run it alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HOST = b"diff.test"          # spelled out inside bodies (see the module docstring)
CRLF = b"\r\n"

CATEGORIES = {
    "baseline": "ordinary requests: the layout works the same on both proxies",
    "smuggling": "request smuggling: CL+TE, conflicting or malformed Content-Length, "
                 "Transfer-Encoding obfuscations",
    "chunked": "chunked body edge cases: sizes, extensions, trailers, missing CRLFs",
    "path": "path normalisation tricks: dot segments, encodings, separators, target forms",
    "header": "header oddities: names, forged identity headers, control bytes, sizes, counts",
    "host": "Host header oddities and host-based routing confusion",
    "method": "request-line oddities: methods, versions, separators",
    "pipelining": "several requests on one connection",
    "oversize": "oversized request lines, header sections and bodies",
    "upgrade": "Upgrade requests (websocket, h2c) with bodies and trailing bytes",
}


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    description: str
    raw: tuple               # bytes of each write (usually one); sent 100 ms apart
    requests: int = 1
    answers: int = 1
    methods: tuple = ()
    connection_unusable: bool = False
    half_close: bool = False
    forbid: tuple = ()
    require: tuple = ()

    def method_list(self) -> list[str]:
        if self.methods:
            return list(self.methods)
        first = self.raw[0].lstrip(b"\r\n ").split(b" ", 1)[0].decode("latin-1")
        return [first] * max(self.answers, 1)


CASES: list[Case] = []
_BODIES: dict[str, list[bytes]] = {}   # bodies built by msg(), per case, for check_corpus()
_pending_bodies: list[bytes] = []       # bodies built by msg() since the last case()


def case(id: str, category: str, description: str, raw, **kw) -> Case:
    """Register a case. `raw` is bytes, or a tuple of bytes sent as separate writes."""
    parts = tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)
    c = Case(id, category, description, parts, **kw)
    CASES.append(c)
    if _pending_bodies:
        _BODIES[id] = list(_pending_bodies)
        _pending_bodies.clear()
    return c


def _b(x) -> bytes:
    return x.encode("latin-1") if isinstance(x, str) else x


def msg(*lines, body=b"") -> bytes:
    """A request: lines joined with CRLF, the blank line, then the body (bytes, as is)."""
    if body:
        _pending_bodies.append(_b(body))
    return CRLF.join(_b(ln) for ln in lines) + CRLF + CRLF + _b(body)


def get(target: str, *headers, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    """A bodiless request with `Host: {HOST}` first, then `headers`."""
    return msg(f"{method} {target} {version}", "Host: {HOST}", *headers)


def post(target: str, headers, body: bytes, method: str = "POST") -> bytes:
    """A request with a body; `headers` are given in full (framing headers included)."""
    return msg(f"{method} {target} HTTP/1.1", "Host: {HOST}", *headers, body=body)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}".encode() + CRLF + data + CRLF


# The request hidden in bodies: a protected path without a token. A proxy that handles it as a
# request of its own answers 401 itself; if the backend ever receives it, the proxy smuggled it.
SMUG = b"GET /api/secret HTTP/1.1\r\nHost: diff.test\r\nX-Smuggled: 1\r\n\r\n"
ZERO_CHUNK = b"0\r\n\r\n"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"
# Chunked reading ends after the 0-chunk; length reading takes SMUG as part of the body.
CHUNKED_SMUG = ZERO_CHUNK + SMUG

NO_UNDERSCORE = rb"^[^:\r\n]*_[^:\r\n]*:"            # any header name with an underscore
ONLY_TRUSTED_USER = rb"^x-user-id:[ \t]*+(?!diff-user[ \t]*\r?$)"  # X-User-Id other than the claim's
HAS_TRUSTED_USER = rb"^x-user-id:[ \t]*diff-user[ \t]*\r?$"

# ==============================================================================================
# baseline
# ==============================================================================================
case("base-pub-get", "baseline", "GET /pub/hello: forwarded as is", get("/pub/hello"))
case("base-pub-exact", "baseline", "GET /pub (the route's own path)", get("/pub"))
case("base-pub-query", "baseline", "GET /pub/x?a=1&b=%2F: query passed through", get("/pub/x?a=1&b=%2F"))
case("base-root", "baseline", "GET /: answered by the proxy itself", get("/"))
case("base-unknown-route", "baseline", "GET /nowhere: no route, 404 from the proxy", get("/nowhere"))
case("base-api-no-token", "baseline", "GET /api/secret without a token: 401, nothing forwarded",
     get("/api/secret"))
case("base-api-bad-token", "baseline", "GET /api/secret with a wrong bearer token: 401",
     get("/api/secret", "Authorization: Bearer not-the-token"))
case("base-api-token", "baseline", "GET /api/secret with a valid token: forwarded with X-User-Id",
     get("/api/secret", "Authorization: Bearer {TOKEN}"), require=(HAS_TRUSTED_USER,))
case("base-strip", "baseline", "GET /strip/x: forwarded as /base/x", get("/strip/x"))
case("base-strip-query", "baseline", "GET /strip/x?q=1: forwarded as /base/x?q=1", get("/strip/x?q=1"))
case("base-head", "baseline", "HEAD /pub/x", get("/pub/x", method="HEAD"))
case("base-post-cl", "baseline", "POST with a Content-Length body",
     post("/pub/form", ["Content-Length: 11", "Content-Type: text/plain"], b"hello world"))
case("base-post-chunked", "baseline", "POST with a chunked body",
     post("/pub/upload", ["Transfer-Encoding: chunked"], chunk(b"hello ") + chunk(b"world") + ZERO_CHUNK))
case("base-http10", "baseline", "HTTP/1.0 GET with Host", get("/pub/x", version="HTTP/1.0"))
case("base-vhost-public", "baseline", "GET /vhost/x with an ordinary Host: public route", get("/vhost/x"))
case("base-vhost-internal", "baseline", "GET /vhost/x with Host internal.test, no token: 401",
     msg("GET /vhost/x HTTP/1.1", "Host: internal.test"))
case("base-vhost-internal-token", "baseline", "GET /vhost/x, Host internal.test, valid token: forwarded",
     msg("GET /vhost/x HTTP/1.1", "Host: internal.test", "Authorization: Bearer {TOKEN}"),
     require=(HAS_TRUSTED_USER,))
case("base-options", "baseline", "OPTIONS /pub/x without CORS headers: forwarded", get("/pub/x", method="OPTIONS"))

# ==============================================================================================
# smuggling: Transfer-Encoding obfuscations. Each header line is sent twice: with a
# Content-Length covering the whole body (`-cl`: body = 0-chunk + SMUG, so a proxy that reads
# by length and forwards the TE header hands the backend a second request), and alone (`-only`:
# body = a chunked "hello", so a proxy that ignores the obfuscated TE reads no body and must
# then choke on the chunk bytes as a next request).
# ==============================================================================================
TE_VARIANTS = [
    # (slug, header line(s), what is special)
    ("plain", b"Transfer-Encoding: chunked", "plain chunked (valid control case)"),
    ("chunked-identity", b"Transfer-Encoding: chunked, identity", "`chunked, identity`: chunked not last"),
    ("identity-chunked", b"Transfer-Encoding: identity, chunked",
     "`identity, chunked` (identity is not a coding any more)"),
    ("gzip-chunked", b"Transfer-Encoding: gzip, chunked",
     "`gzip, chunked`: valid framing, coding a proxy may not support"),
    ("chunked-chunked", b"Transfer-Encoding: chunked, chunked", "chunked applied twice"),
    ("comma-chunked", b"Transfer-Encoding: ,chunked", "empty list element before chunked"),
    ("xchunked", b"Transfer-Encoding: xchunked", "`xchunked`"),
    ("chunkedx", b"Transfer-Encoding: chunkedx", "`chunkedx`"),
    ("chunked-dash", b"Transfer-Encoding: chunked-false", "`chunked-false`"),
    ("quoted", b'Transfer-Encoding: "chunked"', "quoted \"chunked\""),
    ("param", b"Transfer-Encoding: chunked;q=1", "chunked with a parameter"),
    ("two-spaces", b"Transfer-Encoding:  chunked", "two spaces before the value (valid OWS)"),
    ("no-space", b"Transfer-Encoding:chunked", "no space after the colon (valid)"),
    ("tab", b"Transfer-Encoding:\tchunked", "tab before the value (valid OWS)"),
    ("trailing-tab", b"Transfer-Encoding: chunked\t", "tab after the value (valid OWS)"),
    ("trailing-space", b"Transfer-Encoding: chunked ", "space after the value (valid OWS)"),
    ("vtab", b"Transfer-Encoding:\x0bchunked", "vertical tab (\\x0b) before the value"),
    ("formfeed", b"Transfer-Encoding:\x0cchunked", "form feed (\\x0c) before the value"),
    ("vtab-after", b"Transfer-Encoding: chunked\x0b", "vertical tab after the value"),
    ("nul-after", b"Transfer-Encoding: chunked\x00", "NUL after the value"),
    ("cr-before", b"Transfer-Encoding: \rchunked", "bare CR inside the value"),
    ("nonascii", b"Transfer-Encoding: chunked\xff", "obs-text byte after the value"),
    ("upper-value", b"Transfer-Encoding: CHUNKED", "uppercase value (valid: case-insensitive)"),
    ("upper-name", b"TRANSFER-ENCODING: chunked", "uppercase name (valid)"),
    ("mixed-case", b"tRaNsFeR-eNcOdInG: cHuNkEd", "mixed-case name and value (valid)"),
    ("space-before-colon", b"Transfer-Encoding : chunked", "space between name and colon"),
    ("tab-before-colon", b"Transfer-Encoding\t: chunked", "tab between name and colon"),
    ("underscore", b"Transfer_Encoding: chunked", "underscore instead of dash in the name"),
    ("leading-space-line", b" Transfer-Encoding: chunked",
     "line starts with a space (obs-fold of the previous header)"),
    ("leading-tab-line", b"\tTransfer-Encoding: chunked", "line starts with a tab (obs-fold)"),
    ("fold-value", b"Transfer-Encoding:\r\n chunked", "value on an obs-fold continuation line"),
    ("fold-identity", b"Transfer-Encoding: identity\r\n chunked", "`identity` then ` chunked` folded"),
    ("two-identity-last", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
     "two TE headers, identity last"),
    ("two-chunked-last", b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked", "two TE headers, chunked last"),
    ("two-chunked", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", "TE: chunked twice"),
    ("lf-line", b"Transfer-Encoding: chunked\nX-Pad: 1", "header line ended by a bare LF"),
]
for slug, line, what in TE_VARIANTS:
    case(f"smug-te-{slug}-cl", "smuggling",
         f"Content-Length + TE {what}; body 0-chunk then a smuggled GET /api/secret",
         post("/pub/te", [f"Content-Length: {len(CHUNKED_SMUG)}".encode(), line], CHUNKED_SMUG))
    case(f"smug-te-{slug}-only", "smuggling", f"TE {what} alone; chunked body `hello`",
         post("/pub/te", [line], CHUNKED_HELLO))

case("smug-te-first-cl", "smuggling", "TE: chunked before Content-Length (order swapped); smuggled GET in body",
     post("/pub/te", ["Transfer-Encoding: chunked", f"Content-Length: {len(CHUNKED_SMUG)}"], CHUNKED_SMUG))
case("smug-te-cl-short", "smuggling", "classic TE.CL: TE chunked, Content-Length: 4, SMUG inside the first chunk",
     post("/pub/te", ["Transfer-Encoding: chunked", "Content-Length: 4"], chunk(SMUG) + ZERO_CHUNK))
case("smug-cl0-te", "smuggling", "Content-Length: 0 with TE chunked and a chunked body",
     post("/pub/te", ["Content-Length: 0", "Transfer-Encoding: chunked"], CHUNKED_HELLO))
case("smug-te-http10-cl", "smuggling", "TE chunked + Content-Length on an HTTP/1.0 request",
     msg("POST /pub/te HTTP/1.0", "Host: {HOST}", f"Content-Length: {len(CHUNKED_SMUG)}",
         "Transfer-Encoding: chunked", body=CHUNKED_SMUG))
case("smug-te-http10-only", "smuggling", "TE chunked on an HTTP/1.0 request (framing must be treated as faulty)",
     msg("POST /pub/te HTTP/1.0", "Host: {HOST}", "Transfer-Encoding: chunked", body=CHUNKED_HELLO))
case("smug-te-empty-cl", "smuggling", "empty Transfer-Encoding value with Content-Length",
     post("/pub/te", ["Transfer-Encoding:", f"Content-Length: {len(CHUNKED_SMUG)}"], CHUNKED_SMUG))
case("smug-te-identity-cl", "smuggling", "Transfer-Encoding: identity with Content-Length",
     post("/pub/te", ["Transfer-Encoding: identity", f"Content-Length: {len(CHUNKED_SMUG)}"], CHUNKED_SMUG))
case("smug-get-te", "smuggling", "GET with TE chunked body + Content-Length; smuggled GET after the 0-chunk",
     post("/pub/te", [f"Content-Length: {len(CHUNKED_SMUG)}", "Transfer-Encoding: chunked"], CHUNKED_SMUG,
          method="GET"))

# Content-Length variants: the body is SMUG (45 bytes). A proxy that reads the value as 0 (or
# drops the header) leaves SMUG to be parsed as a second request of its own (then 401 at the
# proxy); a proxy that forwards the odd value lets the backend decide.
N = len(SMUG)
CL_VARIANTS = [
    ("dup-0-n", [b"Content-Length: 0", b"Content-Length: %d" % N], "two Content-Length: 0 then the real length"),
    ("dup-n-0", [b"Content-Length: %d" % N, b"Content-Length: 0"], "two Content-Length: the real length then 0"),
    ("dup-same", [b"Content-Length: %d" % N, b"Content-Length: %d" % N], "the same Content-Length twice"),
    ("list-same", [b"Content-Length: %d, %d" % (N, N)], "`N, N` list of equal values"),
    ("list-diff", [b"Content-Length: 0, %d" % N], "`0, N` list of different values"),
    ("plus", [b"Content-Length: +%d" % N], "signed `+N`"),
    ("minus", [b"Content-Length: -%d" % N], "negative `-N`"),
    ("minus-one", [b"Content-Length: -1"], "`-1`"),
    ("space-inside", [b"Content-Length: %d %d" % (N // 10, N % 10)], "digits separated by a space (`4 5`)"),
    ("trailing-junk", [b"Content-Length: %dx" % N], "junk after the digits (`45x`)"),
    ("hex", [b"Content-Length: 0x%x" % N], "hexadecimal `0x2d`"),
    ("decimal-point", [b"Content-Length: %d.0" % N], "decimal point `45.0`"),
    ("leading-zeros", [b"Content-Length: 000%d" % N], "leading zeros `00045` (valid)"),
    ("ows", [b"Content-Length:  %d  " % N], "extra spaces around the value (valid OWS)"),
    ("tab-value", [b"Content-Length:\t%d" % N], "tab before the value (valid OWS)"),
    ("vtab-value", [b"Content-Length:\x0b%d" % N], "vertical tab before the value"),
    ("empty", [b"Content-Length: "], "empty value"),
    ("overflow", [b"Content-Length: 99999999999999999999999"], "value overflowing 64 bits"),
    ("u64-max", [b"Content-Length: 18446744073709551615"], "u64::MAX"),
    ("fullwidth", [b"Content-Length: \xef\xbc\x94\xef\xbc\x95"], "fullwidth UTF-8 digits"),
    ("space-before-colon", [b"Content-Length : %d" % N], "space between name and colon"),
    ("tab-before-colon", [b"Content-Length\t: %d" % N], "tab between name and colon"),
    ("underscore", [b"Content_Length: %d" % N], "underscore in the name"),
    ("folded", [b"X-Pad: a", b" Content-Length: %d" % N], "Content-Length inside an obs-fold continuation"),
    ("fold-value", [b"Content-Length:", b" %d" % N], "value on an obs-fold continuation line"),
]
for slug, lines, what in CL_VARIANTS:
    case(f"smug-cl-{slug}", "smuggling", f"POST, {what}; body = a GET /api/secret", post("/pub/cl", lines, SMUG))
case("smug-cl-get-body", "smuggling", "GET with a Content-Length body that looks like a request (valid: one request)",
     post("/pub/cl", [b"Content-Length: %d" % N], SMUG, method="GET"))
case("smug-cl-head-body", "smuggling", "HEAD with a Content-Length body that looks like a request",
     post("/pub/cl", [b"Content-Length: %d" % N], SMUG, method="HEAD"))
case("smug-cl-delete-body", "smuggling", "DELETE with a Content-Length body (valid)",
     post("/pub/cl", [b"Content-Length: %d" % N], SMUG, method="DELETE"))
case("smug-cl-options-body", "smuggling", "OPTIONS with a Content-Length body",
     post("/pub/cl", [b"Content-Length: %d" % N], SMUG, method="OPTIONS"))

# ==============================================================================================
# chunked edge cases (POST /pub/c, Transfer-Encoding: chunked)
# ==============================================================================================
def chunked(id: str, description: str, body: bytes, **kw) -> None:
    case(id, "chunked", description, post("/pub/c", ["Transfer-Encoding: chunked"], body), **kw)


chunked("chunk-valid", "valid two-chunk body (control)", chunk(b"hello") + chunk(b"world") + ZERO_CHUNK)
chunked("chunk-size-zz", "chunk size `zz` (not hex)", b"zz\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-overflow", "chunk size `ffffffffffffffffff1` (overflows 64 bits)",
        b"ffffffffffffffffff1\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-17f", "chunk size of 17 hex digits", b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-u64max", "chunk size ffffffffffffffff (u64::MAX, 5 bytes sent)",
        b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-negative", "chunk size `-1`", b"-1\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-0x", "chunk size `0x10` with 16 bytes", b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n")
chunked("chunk-size-plus", "chunk size `+5`", b"+5\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-leading-space", "chunk size with a leading space ` 5`", b" 5\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-trailing-space", "chunk size with a trailing space `5 `", b"5 \r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-leading-tab", "chunk size with a leading tab", b"\t5\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-leading-zeros", "chunk size `0005` (valid)", b"0005\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-upper-hex", "chunk size `A` with 10 bytes (valid)", b"A\r\n0123456789\r\n0\r\n\r\n")
chunked("chunk-size-empty", "empty chunk-size line", b"\r\n5\r\nhello\r\n0\r\n\r\n")
chunked("chunk-size-underscore", "chunk size `0_5`", b"0_5\r\nhello\r\n0\r\n\r\n")
chunked("chunk-ext", "chunk extension `;name=value` (valid)", b"5;name=value\r\nhello\r\n0\r\n\r\n")
chunked("chunk-ext-quoted", 'quoted chunk extension `;a="b;c"` (valid)', b'5;a="b;c"\r\nhello\r\n0\r\n\r\n')
chunked("chunk-ext-bare", "bare `;` chunk extension", b"5;\r\nhello\r\n0\r\n\r\n")
chunked("chunk-ext-bws", "space before the extension `5 ;a=b`", b"5 ;a=b\r\nhello\r\n0\r\n\r\n")
chunked("chunk-ext-lf", "bare LF inside a chunk extension", b"5;a=\nb\r\nhello\r\n0\r\n\r\n")
chunked("chunk-ext-long", "8 KiB chunk extension", b"5;a=" + b"x" * 8192 + b"\r\nhello\r\n0\r\n\r\n")
chunked("chunk-ext-last", "extension on the last chunk `0;a=b`", b"5\r\nhello\r\n0;a=b\r\n\r\n")
chunked("chunk-trailer", "trailer field after the last chunk (valid)", b"5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n")
chunked("chunk-trailer-cl", "trailer `Content-Length: 45` then the smuggled request bytes",
        b"5\r\nhello\r\n0\r\nContent-Length: 45\r\n\r\n" + SMUG, answers=2, methods=("POST", "GET"))
chunked("chunk-trailer-te", "trailer `Transfer-Encoding: chunked`",
        b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")
chunked("chunk-trailer-no-colon", "trailer line without a colon", b"5\r\nhello\r\n0\r\nbroken trailer\r\n\r\n")
chunked("chunk-missing-final-crlf", "no CRLF after the last chunk (incomplete message)",
        b"5\r\nhello\r\n0\r\n", connection_unusable=True)
chunked("chunk-missing-final-crlf-eof", "no CRLF after the last chunk, then EOF from the client",
        b"5\r\nhello\r\n0\r\n", connection_unusable=True, half_close=True)
chunked("chunk-missing-last-chunk", "chunks but no 0-chunk (incomplete message)",
        b"5\r\nhello\r\n", connection_unusable=True)
chunked("chunk-data-too-long", "more data than the chunk size says", b"5\r\nhelloXX\r\n0\r\n\r\n")
chunked("chunk-data-no-crlf", "chunk data not followed by CRLF", b"5\r\nhello0\r\n\r\n")
chunked("chunk-data-lf-only", "chunk lines ended by bare LF", b"5\nhello\n0\n\n")
chunked("chunk-data-cr-only", "chunk lines ended by bare CR", b"5\rhello\r0\r\r", connection_unusable=True)
chunked("chunk-many-small", "1000 one-byte chunks (valid)", b"1\r\na\r\n" * 1000 + ZERO_CHUNK)
chunked("chunk-smuggle-after", "valid chunked body followed by SMUG as a pipelined request",
        CHUNKED_HELLO + SMUG, answers=2, methods=("POST", "GET"))

# ==============================================================================================
# path normalisation (GET, no token). A proxy must route the path it forwards: whatever it
# resolves to /api needs the token.
# ==============================================================================================
PATHS = [
    ("dotdot", "/pub/../api/secret", "`..` segment out of /pub into /api"),
    ("dotdot-enc", "/pub/%2e%2e/api/secret", "`%2e%2e` (encoded ..)"),
    ("dotdot-enc-mixed", "/pub/%2E%2e/api/secret", "`%2E%2e` (mixed case)"),
    ("dotdot-enc-upper", "/pub/%2E%2E/api/secret", "`%2E%2E`"),
    ("dotdot-half-enc", "/pub/.%2e/api/secret", "`.%2e`"),
    ("dotdot-half-enc2", "/pub/%2e./api/secret", "`%2e.`"),
    ("double-slash", "//api/secret", "`//api/secret` (empty first segment)"),
    ("triple-slash", "///api/secret", "`///api/secret`"),
    ("double-slash-pub", "/pub//x", "`/pub//x` (merge_slashes)"),
    ("slash-dot-slash", "/pub/./x", "`/pub/./x`"),
    ("dot-enc", "/pub/%2e/x", "`%2e` (encoded .)"),
    ("dot-semicolon", "/pub/.;/x", "`.;` segment"),
    ("dotdot-semicolon", "/pub/..;/api/secret", "`..;` segment (Tomcat path parameter)"),
    ("dotdot-semicolon-param", "/pub/..;a=b/api/secret", "`..;a=b` segment"),
    ("pub-semicolon-dotdot", "/pub;x/../api/secret", "`/pub;x/..`"),
    ("dotdot-enc-slash", "/pub/..%2fapi/secret", "`..%2f` (encoded slash after ..)"),
    ("dotdot-enc-slash-upper", "/pub/..%2Fapi/secret", "`..%2F`"),
    ("dotdot-enc-slash-short", "/pub/..%2Fapi", "`/pub/..%2Fapi`"),
    ("enc-slash-dotdot-enc-slash", "/pub%2f..%2fapi/secret", "`/pub%2f..%2fapi` (all encoded)"),
    ("enc-slash-api", "/api%2fsecret", "`/api%2fsecret`"),
    ("backslash", "/pub\\..\\api\\secret", "backslashes instead of slashes"),
    ("backslash-dotdot", "/pub/..\\api/secret", "`..\\`"),
    ("backslash-enc", "/pub/..%5capi/secret", "`..%5c` (encoded backslash)"),
    ("backslash-enc-upper", "/pub/..%5Capi/secret", "`..%5C`"),
    ("nul-enc", "/pub/x%00.html", "`%00` in a segment"),
    ("nul-enc-dotdot", "/pub/..%00/api/secret", "`..%00`"),
    ("climb-root", "/../x", "`/../x` above the root"),
    ("climb-root-api", "/../api/secret", "`/../api/secret`"),
    ("climb-deep", "/pub/../../../etc/passwd", "three `..` from /pub"),
    ("climb-enc", "/%2e%2e/%2e%2e/etc/passwd", "encoded `..` above the root"),
    ("climb-strip", "/strip/../../x", "climb out of /strip above the root"),
    ("trailing-dotdot", "/pub/..", "trailing `/..`"),
    ("trailing-dotdot-slash", "/pub/../", "trailing `/../`"),
    ("trailing-dot", "/pub/.", "trailing `/.`"),
    ("trailing-dotdot-api", "/pub/x/../../api", "`/pub/x/../../api`"),
    ("dotdot-query", "/pub/..?x=1", "`..` then a query"),
    ("three-dots", "/pub/.../x", "`...` (not a dot segment)"),
    ("double-enc", "/pub/%252e%252e/api/secret", "double-encoded `%252e%252e`"),
    ("double-enc-slash", "/pub/..%252fapi/secret", "double-encoded slash `..%252f`"),
    ("overlong-dot", "/pub/%c0%ae%c0%ae/api/secret", "overlong UTF-8 dots `%c0%ae`"),
    ("overlong-slash", "/pub/..%c0%afapi/secret", "overlong UTF-8 slash `%c0%af`"),
    ("overlong-3byte", "/pub/%e0%80%ae%e0%80%ae/api/secret", "3-byte overlong dots"),
    ("u-escape", "/pub/%u002e%u002e/api/secret", "IIS `%u002e` escapes"),
    ("fullwidth-dots", "/pub/\xef\xbc\x8e\xef\xbc\x8e/api/secret", "raw UTF-8 fullwidth dots"),
    ("enc-pub", "/%70ub/x", "`/%70ub/x` (encoded p: /pub/x once decoded)"),
    ("enc-api", "/%61pi/secret", "`/%61pi/secret` (/api/secret once decoded)"),
    ("case-api", "/API/secret", "`/API/secret` (routes are case-sensitive)"),
    ("prefix-confusion-pub", "/pubx/y", "`/pubx` (not on a segment boundary)"),
    ("prefix-confusion-api", "/apix", "`/apix`"),
    ("strip-dotdot", "/strip/../api/secret", "`..` out of /strip"),
    ("strip-dotdot-enc", "/strip/%2e%2e/api/secret", "`%2e%2e` out of /strip"),
    ("strip-dot", "/strip/./x", "`/strip/./x`"),
    ("strip-double-slash", "/strip//x", "`/strip//x`"),
    ("strip-exact", "/strip", "`/strip` alone"),
    ("strip-dotdot-only", "/strip/..", "`/strip/..`"),
    ("strip-backslash", "/strip/..%5c..%5cx", "encoded backslashes out of /strip"),
    ("percent-invalid", "/pub/%zz", "invalid percent escape `%zz`"),
    ("percent-truncated", "/pub/x%2", "truncated percent escape"),
    ("fragment", "/pub/x#frag", "fragment in the target"),
    ("fragment-dotdot", "/pub/x#/../../api/secret", "`..` after a `#`"),
    ("query-dotdot", "/pub/x?/../../api/secret", "`..` inside the query (not the path)"),
    ("very-long", "/pub/" + "a" * 6000, "6000-byte path (under NGINX's 8 KiB line)"),
    ("many-segments", "/pub/" + "a/" * 2000, "2000 segments"),
    ("many-dotdot", "/pub/" + "a/" * 50 + "../" * 51 + "api/secret", "50 segments then 51 `..`"),
]
for slug, target, what in PATHS:
    case(f"path-{slug}", "path", f"GET {what}", get(target))

case("path-absolute-form", "path", "absolute-form target `http://diff.test/pub/x` (valid)",
     get("http://diff.test/pub/x"))
case("path-absolute-form-dotdot", "path", "absolute-form `http://diff.test/pub/../api/secret`",
     get("http://diff.test/pub/../api/secret"))
case("path-absolute-form-https", "path", "absolute-form with https scheme", get("https://diff.test/pub/x"))
case("path-absolute-form-no-path", "path", "absolute-form without a path `http://diff.test`",
     get("http://diff.test"))
case("path-absolute-form-enc", "path", "absolute-form with `%2e%2e`", get("http://diff.test/pub/%2e%2e/api/secret"))
case("path-absolute-form-userinfo", "path", "absolute-form with userinfo `http://a@diff.test/pub/x`",
     get("http://a@diff.test/pub/x"))
case("path-asterisk-get", "path", "asterisk-form `*` with GET", get("*"))
case("path-asterisk-post", "path", "asterisk-form `*` with POST and a body",
     post("*", ["Content-Length: 5"], b"hello"))
case("path-asterisk-options", "path", "`OPTIONS *` (the one valid asterisk-form use)", get("*", method="OPTIONS"))
case("path-empty", "path", "empty request-target (`GET  HTTP/1.1`)", msg("GET  HTTP/1.1", "Host: {HOST}"))
case("path-query-only", "path", "target starting with `?`", get("?x=1"))
case("path-no-leading-slash", "path", "target without a leading slash `pub/x`", get("pub/x"))
case("path-nul-raw", "path", "raw NUL byte in the path", get("/pub/x\x00y"))
case("path-space-raw", "path", "raw space in the path", get("/pub/a b"))
case("path-tab-raw", "path", "raw tab in the path", get("/pub/a\tb"))
case("path-del-raw", "path", "raw DEL byte in the path", get("/pub/a\x7fb"))
case("path-utf8-raw", "path", "raw UTF-8 in the path", get("/pub/caf\xc3\xa9"))
case("path-api-token-dotdot", "path", "with a valid token: `/api/x/../y` must reach the backend normalised",
     get("/api/x/../y", "Authorization: Bearer {TOKEN}"))

# ==============================================================================================
# header oddities
# ==============================================================================================
case("hdr-underscore-user-pub", "header", "`X_User_Id: admin` on /pub (underscore lookalike of X-User-Id)",
     get("/pub/x", "X_User_Id: admin"), forbid=(NO_UNDERSCORE,))
case("hdr-underscore-user-api", "header", "valid token plus `X_User_Id: admin` on /api",
     get("/api/x", "Authorization: Bearer {TOKEN}", "X_User_Id: admin"),
     forbid=(NO_UNDERSCORE, ONLY_TRUSTED_USER), require=(HAS_TRUSTED_USER,))
case("hdr-underscore-other", "header", "`X_Forwarded_For: 1.2.3.4` on /pub",
     get("/pub/x", "X_Forwarded_For: 1.2.3.4"), forbid=(NO_UNDERSCORE,))
case("hdr-forged-user-api", "header", "valid token plus a forged `X-User-Id: admin`",
     get("/api/x", "Authorization: Bearer {TOKEN}", "X-User-Id: admin"),
     forbid=(ONLY_TRUSTED_USER,), require=(HAS_TRUSTED_USER,))
case("hdr-forged-user-api-lower", "header", "valid token plus a forged `x-user-id: admin` (lowercase)",
     get("/api/x", "Authorization: Bearer {TOKEN}", "x-user-id: admin"),
     forbid=(ONLY_TRUSTED_USER,), require=(HAS_TRUSTED_USER,))
case("hdr-forged-user-api-twice", "header", "valid token plus two forged X-User-Id headers",
     get("/api/x", "X-User-Id: admin", "Authorization: Bearer {TOKEN}", "X-User-Id: root"),
     forbid=(ONLY_TRUSTED_USER,), require=(HAS_TRUSTED_USER,))
case("hdr-forged-user-api-space-colon", "header", "valid token plus `X-User-Id : admin` (space before colon)",
     get("/api/x", "Authorization: Bearer {TOKEN}", "X-User-Id : admin"),
     forbid=(ONLY_TRUSTED_USER, rb"^x-user-id[ \t]+:"))
case("hdr-forged-user-vhost", "header", "Host internal.test, valid token, forged X-User-Id",
     msg("GET /vhost/x HTTP/1.1", "Host: internal.test", "Authorization: Bearer {TOKEN}", "X-User-Id: admin"),
     forbid=(ONLY_TRUSTED_USER,), require=(HAS_TRUSTED_USER,))
case("hdr-connection-user-id", "header",
     "valid token plus `Connection: X-User-Id` (hop-by-hop strip of the identity header)",
     get("/api/x", "Authorization: Bearer {TOKEN}", "Connection: X-User-Id"), require=(HAS_TRUSTED_USER,))
case("hdr-connection-authorization", "header", "`Connection: Authorization` with a valid token",
     get("/api/x", "Authorization: Bearer {TOKEN}", "Connection: Authorization"))
case("hdr-auth-dup-bad-first", "header", "two Authorization headers: a wrong one, then the valid one",
     get("/api/x", "Authorization: Bearer wrong", "Authorization: Bearer {TOKEN}"))
case("hdr-auth-dup-good-first", "header", "two Authorization headers: the valid one, then a wrong one",
     get("/api/x", "Authorization: Bearer {TOKEN}", "Authorization: Bearer wrong"))
case("hdr-no-colon", "header", "header line without a colon", get("/pub/x", "X-No-Colon value"))
case("hdr-empty-name", "header", "empty header name `: value`", get("/pub/x", ": value"))
case("hdr-space-before-colon", "header", "`X-Foo : bar` (space before colon)", get("/pub/x", "X-Foo : bar"))
case("hdr-space-in-name", "header", "`X Foo: bar` (space inside the name)", get("/pub/x", "X Foo: bar"))
case("hdr-name-nonascii", "header", "non-ASCII byte in a header name", get("/pub/x", "X-F\xf6o: bar"))
case("hdr-name-separator", "header", "`X-Foo(bar): 1` (separator in the name)", get("/pub/x", "X-Foo(bar): 1"))
case("hdr-value-nul", "header", "NUL byte inside a value", get("/pub/x", "X-Foo: a\x00b"))
case("hdr-value-cr", "header", "bare CR inside a value", get("/pub/x", "X-Foo: a\rb"))
case("hdr-value-lf", "header", "bare LF inside a value (`X-Foo: a\\nX-Injected: 1`)",
     get("/pub/x", "X-Foo: a\nX-Injected: 1"))
case("hdr-value-ctl", "header", "\\x01 inside a value", get("/pub/x", "X-Foo: a\x01b"))
case("hdr-value-del", "header", "DEL inside a value", get("/pub/x", "X-Foo: a\x7fb"))
case("hdr-value-esc", "header", "ESC sequence inside a value", get("/pub/x", "X-Foo: \x1b[31mred"))
case("hdr-value-obs-text", "header", "obs-text bytes \\xff\\xfe in a value", get("/pub/x", "X-Foo: \xff\xfe"))
case("hdr-value-utf8", "header", "UTF-8 in a value", get("/pub/x", "X-Foo: caf\xc3\xa9"))
case("hdr-obs-fold", "header", "obs-fold continuation line of X-Foo", get("/pub/x", "X-Foo: a", "  b"))
case("hdr-first-line-folded", "header", "the first header line starts with a space",
     msg("GET /pub/x HTTP/1.1", " X-Foo: a", "Host: {HOST}"))
case("hdr-bare-lf", "header", "whole request with bare LF line endings", b"GET /pub/x HTTP/1.1\nHost: {HOST}\n\n")
case("hdr-mixed-eol", "header", "CRLF and bare LF line endings mixed",
     b"GET /pub/x HTTP/1.1\r\nHost: {HOST}\nX-Foo: a\r\n\n")
case("hdr-cr-only", "header", "bare CR line endings", b"GET /pub/x HTTP/1.1\rHost: {HOST}\r\r",
     connection_unusable=True)
case("hdr-7k-single", "header", "one 7 KiB header value (under NGINX's 8 KiB buffer)",
     get("/pub/x", "X-Big: " + "a" * 7 * 1024))
case("hdr-16k-single", "header", "one 16 KiB header value", get("/pub/x", "X-Big: " + "a" * 16 * 1024))
case("hdr-100k-single", "header", "one 100 KiB header value", get("/pub/x", "X-Big: " + "a" * 100 * 1024))
case("hdr-100-headers", "header", "100 distinct headers", get("/pub/x", *[f"X-H{i}: v" for i in range(100)]))
case("hdr-200-headers", "header", "200 distinct headers", get("/pub/x", *[f"X-H{i}: v" for i in range(200)]))
case("hdr-200-same", "header", "the same header 200 times", get("/pub/x", *["X-Same: v"] * 200))
case("hdr-1000-headers", "header", "1000 distinct headers", get("/pub/x", *[f"X-H{i}: v" for i in range(1000)]))
case("hdr-expect-100", "header", "Expect: 100-continue with the body sent at once",
     post("/pub/x", ["Content-Length: 5", "Expect: 100-continue"], b"hello"))
case("hdr-expect-unknown", "header", "`Expect: something-else`", get("/pub/x", "Expect: something-else"))
case("hdr-content-length-get-zero", "header", "GET with Content-Length: 0", get("/pub/x", "Content-Length: 0"))
case("hdr-xff-spoof", "header", "client-supplied X-Forwarded-For / X-Forwarded-Host",
     get("/pub/x", "X-Forwarded-For: 10.0.0.1", "X-Forwarded-Host: evil.test"))
case("hdr-te-trailers", "header", "`TE: trailers` request header (hop-by-hop)", get("/pub/x", "TE: trailers"))
case("hdr-keep-alive-junk", "header", "`Keep-Alive: timeout=0, max=0` and `Proxy-Connection: close`",
     get("/pub/x", "Keep-Alive: timeout=0, max=0", "Proxy-Connection: close"))

# ==============================================================================================
# Host
# ==============================================================================================
def host_case(id: str, description: str, *host_lines, target: str = "/vhost/x", **kw) -> None:
    case(id, "host", description, msg(f"GET {target} HTTP/1.1", *host_lines), **kw)


host_case("host-missing-http11", "HTTP/1.1 without Host", target="/pub/x")
host_case("host-missing-http11-api", "HTTP/1.1 without Host, /api without token", target="/api/secret")
case("host-missing-http10", "host", "HTTP/1.0 without Host (valid)", msg("GET /pub/x HTTP/1.0"))
host_case("host-empty", "empty Host value", "Host:", target="/pub/x")
host_case("host-duplicate-same", "Host twice, same value", "Host: diff.test", "Host: diff.test", target="/pub/x")
host_case("host-duplicate-diff", "Host twice: diff.test then internal.test", "Host: diff.test", "Host: internal.test")
host_case("host-duplicate-internal-first", "Host twice: internal.test then diff.test", "Host: internal.test",
          "Host: diff.test")
host_case("host-trailing-dot", "Host `diff.test.` on /pub", "Host: diff.test.", target="/pub/x")
host_case("host-trailing-dot-vhost", "Host `internal.test.` (trailing dot) on /vhost, no token",
          "Host: internal.test.")
host_case("host-double-dot-vhost", "Host `internal.test..`", "Host: internal.test..")
host_case("host-leading-dot-vhost", "Host `.internal.test`", "Host: .internal.test")
host_case("host-upper-vhost", "Host `INTERNAL.TEST` (case-insensitive)", "Host: INTERNAL.TEST")
host_case("host-port-vhost", "Host `internal.test:80`", "Host: internal.test:80")
host_case("host-port-junk-vhost", "Host `internal.test:8x0` (port junk)", "Host: internal.test:8x0")
host_case("host-port-empty-vhost", "Host `internal.test:` (empty port)", "Host: internal.test:")
host_case("host-port-junk", "Host `diff.test:abc`", "Host: diff.test:abc", target="/pub/x")
host_case("host-port-two", "Host `diff.test:80:81`", "Host: diff.test:80:81", target="/pub/x")
host_case("host-space", "Host `a b`", "Host: a b", target="/pub/x")
host_case("host-at", "Host `a@b`", "Host: a@b", target="/pub/x")
host_case("host-at-vhost", "Host `x@internal.test`", "Host: x@internal.test")
host_case("host-slash", "Host `diff.test/pub`", "Host: diff.test/pub", target="/pub/x")
host_case("host-backslash", "Host `diff.test\\x`", "Host: diff.test\\x", target="/pub/x")
host_case("host-nul", "NUL in Host", "Host: diff\x00.test", target="/pub/x")
host_case("host-utf8", "raw UTF-8 in Host", "Host: d\xc3\xaff.test", target="/pub/x")
host_case("host-ipv6", "Host `[::1]:80`", "Host: [::1]:80", target="/pub/x")
host_case("host-ipv6-broken", "Host `[::1` (unclosed bracket)", "Host: [::1", target="/pub/x")
host_case("host-tab-vhost", "Host with a tab before the value (valid OWS)", "Host:\tinternal.test")
host_case("host-trailing-space-vhost", "Host with a trailing space (valid OWS)", "Host: internal.test ")
host_case("host-underscore-vhost", "`Host_: internal.test` plus Host diff.test", "Host: diff.test",
          "Host_: internal.test", forbid=(NO_UNDERSCORE,))
case("host-absolute-form-override", "host", "target `http://internal.test/vhost/x` with Host diff.test "
     "(the request-line host wins)", msg("GET http://internal.test/vhost/x HTTP/1.1", "Host: diff.test"))
case("host-absolute-form-reverse", "host", "target `http://diff.test/vhost/x` with Host internal.test",
     msg("GET http://diff.test/vhost/x HTTP/1.1", "Host: internal.test"))
case("host-absolute-form-dot", "host", "target `http://internal.test./vhost/x` with Host diff.test",
     msg("GET http://internal.test./vhost/x HTTP/1.1", "Host: diff.test"))

# ==============================================================================================
# request-line / method oddities
# ==============================================================================================
def line_case(id: str, description: str, request_line, *headers, **kw) -> None:
    case(id, "method", description, msg(request_line, "Host: {HOST}", *headers), **kw)


line_case("m-lowercase-get", "lowercase method `get`", "get /pub/x HTTP/1.1")
line_case("m-lowercase-get-api", "lowercase `get /api/secret`", "get /api/secret HTTP/1.1")
line_case("m-mixed-case", "mixed-case method `Get`", "Get /pub/x HTTP/1.1")
line_case("m-connect-authority", "`CONNECT diff.test:443`", "CONNECT diff.test:443 HTTP/1.1")
line_case("m-connect-backend", "`CONNECT 127.0.0.1:22` (tunnel attempt)", "CONNECT 127.0.0.1:22 HTTP/1.1")
line_case("m-connect-path", "`CONNECT /pub/x`", "CONNECT /pub/x HTTP/1.1")
line_case("m-unknown-foo", "unknown method `FOO`", "FOO /pub/x HTTP/1.1")
line_case("m-propfind", "WebDAV `PROPFIND`", "PROPFIND /pub/x HTTP/1.1")
line_case("m-long-100", "100-byte method", "A" * 100 + " /pub/x HTTP/1.1")
line_case("m-long-10k", "10 KiB method", "A" * 10240 + " /pub/x HTTP/1.1")
line_case("m-method-underscore", "method with an underscore `GET_X`", "GET_X /pub/x HTTP/1.1")
line_case("m-method-separator", "method with a separator `GE(T`", "GE(T /pub/x HTTP/1.1")
line_case("m-method-nul", "NUL inside the method", "G\x00ET /pub/x HTTP/1.1")
line_case("m-trace", "`TRACE /pub/x`", "TRACE /pub/x HTTP/1.1")
line_case("m-track", "`TRACK /pub/x`", "TRACK /pub/x HTTP/1.1")
line_case("m-double-space", "two spaces after the method `GET  /pub/x`", "GET  /pub/x HTTP/1.1")
line_case("m-double-space-version", "two spaces before the version", "GET /pub/x  HTTP/1.1")
line_case("m-trailing-space", "trailing space after the version", "GET /pub/x HTTP/1.1 ")
line_case("m-tab-separators", "tabs as separators", "GET\t/pub/x\tHTTP/1.1")
line_case("m-leading-space", "leading space before the method", " GET /pub/x HTTP/1.1")
case("m-leading-crlf", "method", "an empty line before the request line (to be ignored)",
     b"\r\n" + get("/pub/x"))
case("m-http09", "method", "HTTP/0.9-style `GET /pub/x` without a version", b"GET /pub/x\r\n")
line_case("m-http12", "`HTTP/1.2`", "GET /pub/x HTTP/1.2")
line_case("m-http19", "`HTTP/1.9`", "GET /pub/x HTTP/1.9")
line_case("m-http20", "`HTTP/2.0` in an HTTP/1 request line", "GET /pub/x HTTP/2.0")
line_case("m-http30", "`HTTP/3.0`", "GET /pub/x HTTP/3.0")
line_case("m-http-lower", "lowercase `http/1.1`", "GET /pub/x http/1.1")
line_case("m-http-110", "`HTTP/1.10`", "GET /pub/x HTTP/1.10")
line_case("m-http-0-1", "`HTTP/01.1`", "GET /pub/x HTTP/01.1")
line_case("m-http-no-minor", "`HTTP/1`", "GET /pub/x HTTP/1")
line_case("m-http-junk", "`HTTP/1.1x`", "GET /pub/x HTTP/1.1x")
line_case("m-http-missing", "`HTTP/` without digits", "GET /pub/x HTTP/")
line_case("m-head-api", "HEAD /api/secret without a token", "HEAD /api/secret HTTP/1.1")
case("m-pri-preface", "method", "the HTTP/2 connection preface on the HTTP/1 port",
     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
case("m-garbage", "method", "binary garbage (a TLS ClientHello start) instead of a request",
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")

# ==============================================================================================
# pipelining
# ==============================================================================================
case("pipe-two-gets", "pipelining", "two GETs in one write", get("/pub/a") + get("/pub/b"), requests=2, answers=2)
case("pipe-three-gets", "pipelining", "three GETs in one write", get("/pub/a") * 3, requests=3, answers=3)
case("pipe-50-gets", "pipelining", "50 GETs in one write", get("/pub/a") * 50, requests=50, answers=50)
case("pipe-head-then-get", "pipelining", "HEAD followed by a pipelined GET in one write",
     get("/pub/a", method="HEAD") + get("/pub/b"), requests=2, answers=2, methods=("HEAD", "GET"))
case("pipe-head-then-get-later", "pipelining", "HEAD, then a GET 100 ms later on the same connection",
     (get("/pub/a", method="HEAD"), get("/pub/b")), requests=2, answers=2, methods=("HEAD", "GET"))
case("pipe-head-then-head", "pipelining", "two HEADs in one write",
     get("/pub/a", method="HEAD") * 2, requests=2, answers=2, methods=("HEAD", "HEAD"))
case("pipe-after-close", "pipelining", "GET with Connection: close, then a second GET in the same write",
     get("/pub/a", "Connection: close") + get("/pub/b"), requests=1, answers=1)
case("pipe-after-close-later", "pipelining", "GET with Connection: close, then a GET 100 ms later",
     (get("/pub/a", "Connection: close"), get("/pub/b")), requests=1, answers=1)
case("pipe-after-http10", "pipelining", "HTTP/1.0 GET (closes), then a GET in the same write",
     get("/pub/a", version="HTTP/1.0") + get("/pub/b"), requests=1, answers=1)
case("pipe-post-cl-then-get", "pipelining", "POST with a Content-Length body, then a GET",
     post("/pub/a", ["Content-Length: 5"], b"hello") + get("/pub/b"), requests=2, answers=2,
     methods=("POST", "GET"))
case("pipe-post-chunked-then-get", "pipelining", "POST with a chunked body, then a GET",
     post("/pub/a", ["Transfer-Encoding: chunked"], CHUNKED_HELLO) + get("/pub/b"), requests=2, answers=2,
     methods=("POST", "GET"))
case("pipe-get-then-api", "pipelining", "GET /pub, then GET /api/secret without a token",
     get("/pub/a") + get("/api/secret"), requests=1, answers=2)
case("pipe-garbage-then-get", "pipelining", "an invalid request line, then a GET", b"XXXX\r\n\r\n" + get("/pub/b"),
     requests=0, answers=1)
case("pipe-get-then-garbage", "pipelining", "a GET, then an invalid request line", get("/pub/a") + b"XXXX\r\n\r\n",
     requests=1, answers=2)
case("pipe-expect-then-get", "pipelining", "POST with Expect: 100-continue and its body, then a GET",
     post("/pub/a", ["Content-Length: 5", "Expect: 100-continue"], b"hello") + get("/pub/b"),
     requests=2, answers=2, methods=("POST", "GET"))
case("pipe-401-body-then-get", "pipelining", "POST /api without a token with a body, then a GET /pub",
     post("/api/x", ["Content-Length: 5"], b"hello") + get("/pub/b"), requests=1, answers=2,
     methods=("POST", "GET"))

# ==============================================================================================
# oversized parts (NGINX defaults: 8 KiB request line / header line, 32 KiB of headers,
# client_max_body_size 1m; the gateway runs with max_body_size 1MiB to match)
# ==============================================================================================
case("big-line-9k", "oversize", "9 KiB request line", get("/pub/" + "a" * 9 * 1024))
case("big-line-70k", "oversize", "70 KiB request line", get("/pub/" + "a" * 70 * 1024))
case("big-query-20k", "oversize", "20 KiB query string", get("/pub/x?q=" + "a" * 20 * 1024))
case("big-headers-40x1k", "oversize", "40 headers of 1 KiB each (40 KiB header section)",
     get("/pub/x", *[f"X-H{i}: " + "a" * 1024 for i in range(40)]))
case("big-headers-5000", "oversize", "5000 small headers", get("/pub/x", *[f"X-{i}: v" for i in range(5000)]))
case("big-body-cl-declared", "oversize", "Content-Length: 2 MiB declared, 64 KiB sent",
     msg("POST /pub/big HTTP/1.1", "Host: {HOST}", "Content-Length: 2097152") + b"a" * 65536)
case("big-body-cl-limit", "oversize", "Content-Length: exactly 1 MiB, fully sent (at the limit)",
     msg("POST /pub/big HTTP/1.1", "Host: {HOST}", "Content-Length: 1048576") + b"a" * 1048576)
case("big-body-cl-limit-plus-1", "oversize", "Content-Length: 1 MiB + 1, fully sent",
     msg("POST /pub/big HTTP/1.1", "Host: {HOST}", "Content-Length: 1048577") + b"a" * 1048577)
case("big-body-chunked-over", "oversize", "chunked body of 1.25 MiB in 64 KiB chunks, fully sent",
     msg("POST /pub/big HTTP/1.1", "Host: {HOST}", "Transfer-Encoding: chunked")
     + chunk(b"a" * 65536) * 20 + ZERO_CHUNK)
case("big-chunk-declared", "oversize", "one chunk declared as 2 MiB, 16 bytes sent",
     msg("POST /pub/big HTTP/1.1", "Host: {HOST}", "Transfer-Encoding: chunked") + b"200000\r\n" + b"a" * 16,
     connection_unusable=True)

# ==============================================================================================
# Upgrade
# ==============================================================================================
WS = ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
H2C = ["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]
case("up-ws-plain", "upgrade", "websocket upgrade (the backend answers 200, not 101)", get("/pub/ws", *WS))
case("up-ws-body", "upgrade", "websocket upgrade with a Content-Length body that looks like a request",
     post("/pub/ws", WS + [f"Content-Length: {N}"], SMUG, method="GET"))
case("up-ws-trailing", "upgrade", "websocket upgrade, then SMUG bytes right after the head (no body declared)",
     get("/pub/ws", *WS) + SMUG, answers=2)
case("up-ws-api-no-token", "upgrade", "websocket upgrade on /api without a token", get("/api/ws", *WS))
case("up-ws-te", "upgrade", "websocket upgrade with a chunked body",
     post("/pub/ws", WS + ["Transfer-Encoding: chunked"], CHUNKED_HELLO, method="GET"))
case("up-no-connection", "upgrade", "`Upgrade: websocket` without `Connection: Upgrade`",
     get("/pub/ws", "Upgrade: websocket"))
case("up-unknown-proto", "upgrade", "`Upgrade: foo/1.0`", get("/pub/ws", "Connection: Upgrade", "Upgrade: foo/1.0"))
case("up-h2c", "upgrade", "h2c upgrade on a GET", get("/pub/h2c", *H2C))
case("up-h2c-body", "upgrade", "h2c upgrade on a POST with a body",
     post("/pub/h2c", H2C + ["Content-Length: 5"], b"hello"))
case("up-h2c-preface", "upgrade", "h2c upgrade immediately followed by the HTTP/2 preface",
     get("/pub/h2c", *H2C) + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", answers=2)
case("up-h2c-smuggle", "upgrade", "h2c upgrade followed by SMUG as a pipelined request",
     get("/pub/h2c", *H2C) + SMUG, answers=2)


# ==============================================================================================
def check_corpus() -> list[str]:
    """Problems in the corpus itself (the runner refuses to run with any)."""
    problems = []
    seen = set()
    for c in CASES:
        if c.id in seen:
            problems.append(f"{c.id}: duplicate id")
        seen.add(c.id)
        if c.category not in CATEGORIES:
            problems.append(f"{c.id}: unknown category {c.category!r}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", c.id):
            problems.append(f"{c.id}: ids are lowercase words joined by dashes")
        for body in _BODIES.get(c.id, []):
            if b"{HOST}" in body or b"{TOKEN}" in body:
                problems.append(f"{c.id}: placeholder inside a body (lengths would change)")
        if c.requests < 0 or c.answers < 0:
            problems.append(f"{c.id}: negative requests/answers")
    return problems
