#!/usr/bin/env bash
# Proves the scratch image works: the static (musl) gateway binary starts and serves from an
# otherwise empty root — a chroot holding only the binary and a config (no libc, no /etc, no
# /proc). Needs root (chroot). Usage: scripts/check_static.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/rustygate-target}"
bin="${1:-$target/x86_64-unknown-linux-musl/${PROFILE:-debug}/rustygate}"
[ -x "$bin" ] || { echo "check-static: $bin missing (cargo build --target x86_64-unknown-linux-musl -p rustygate)" >&2; exit 2; }
if ! ldd "$bin" 2>&1 | grep -qE "not a dynamic executable|statically linked"; then
  echo "check-static: $bin is not statically linked: $(ldd "$bin" 2>&1 | head -3)" >&2
  exit 1
fi

root=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$root" "$root.log"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
tls=$(free_port)
cp "$bin" "$root/rustygate"
mkdir "$root/config"
# HTTPS too: the TLS stack (rustls, aws-lc) is in the static binary, certificates from files.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$root/config/tls.key" \
  -out "$root/config/tls.pem" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
cat > "$root/config/gateway.yaml" <<YAML
server:
  listen: "127.0.0.1:$port"
  workers: 1
  tls: { listen: "127.0.0.1:$tls", certificates: [ { cert_file: /config/tls.pem, key_file: /config/tls.key } ] }
admin: { listen: "127.0.0.1:$admin" }
routes:
  - { path: /api, backend: "http://127.0.0.1:9" }
YAML
echo "check-static: chroot $root contains: $(cd "$root" && find . -type f | sort | tr '\n' ' ')"
chroot "$root" /rustygate --config /config/gateway.yaml > "$root.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  chroot "$root" /rustygate health --url "http://127.0.0.1:$admin/healthz" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$root.log" >&2; echo "check-static: the gateway exited" >&2; exit 1; }
  sleep 0.1
done
banner=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/', timeout=5).read().decode())")
[ "$banner" = "RustyGate is running" ] || { echo "check-static: GET / answered $banner" >&2; exit 1; }
status=$(python3 -c "
import urllib.request, urllib.error
try: urllib.request.urlopen('http://127.0.0.1:$port/api/x', timeout=5)
except urllib.error.HTTPError as e: print(e.code)")
[ "$status" = "502" ] || { echo "check-static: a dead backend answered $status, expected 502" >&2; exit 1; }
https=$(python3 -c "
import ssl, urllib.request
ctx = ssl.create_default_context(cafile='$root/config/tls.pem')
print(urllib.request.urlopen(urllib.request.Request('https://localhost:$tls/'), context=ctx, timeout=5).read().decode())")
[ "$https" = "RustyGate is running" ] || { echo "check-static: GET / over HTTPS answered $https" >&2; exit 1; }
echo "check-static: PASS: static binary ($(du -h "$bin" | cut -f1)) serves / over HTTP and HTTPS and a 502 from an empty root"
