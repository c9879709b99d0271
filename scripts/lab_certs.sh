#!/usr/bin/env bash
# The lab's TLS material in compose/certs/ (git-ignored: private keys are never committed):
# a lab CA and the gateway's certificate signed by it (ECDSA P-256), for localhost, 127.0.0.1,
# the compose service name `gateway` and *.lab.test; the HTTPS mock backend's certificate
# (backend4, :8004) signed by the same CA; and a client CA with one client
# certificate (CN=lab-client, URI:spiffe://lab/client) for the mTLS route. Made when missing or
# when the gateway's certificate expires within two days; otherwise left as it is (a running
# lab keeps its CAs).
#
#   scripts/lab_certs.sh          make them if needed (`make lab-certs`)
#   scripts/lab_certs.sh --force  make new ones
#
# Trust the lab CA for one command: curl --cacert compose/certs/ca.pem https://localhost:8443/
set -euo pipefail
cd "$(dirname "$0")/.."
dir=compose/certs
mkdir -p "$dir"
if [ "${1:-}" != "--force" ] && [ -s "$dir/gateway.pem" ] && [ -s "$dir/gateway.key" ] && [ -s "$dir/client.pem" ] \
  && [ -s "$dir/backend.pem" ] \
  && openssl x509 -in "$dir/gateway.pem" -noout -checkend 172800 >/dev/null 2>&1; then
  exit 0
fi
command -v openssl >/dev/null || { echo "lab_certs: openssl is needed (apt-get install -y openssl)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 30 \
  -subj "/CN=RustyGate lab CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${ec[@]}" -keyout "$tmp/gateway.key" -out "$tmp/gateway.csr" -subj "/CN=rustygate lab gateway" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:gateway,DNS:*.lab.test" \
  "extendedKeyUsage=serverAuth" "basicConstraints=CA:FALSE" > "$tmp/gateway.ext"
openssl x509 -req -in "$tmp/gateway.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
  -out "$tmp/gateway.pem" -days 30 -extfile "$tmp/gateway.ext" 2>/dev/null
# The HTTPS backend (mock backend 4, :8004), signed by the lab CA, which its upstream trusts.
openssl req "${ec[@]}" -keyout "$tmp/backend.key" -out "$tmp/backend.csr" -subj "/CN=rustygate lab backend4" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:backend4" "extendedKeyUsage=serverAuth" \
  "basicConstraints=CA:FALSE" > "$tmp/backend.ext"
openssl x509 -req -in "$tmp/backend.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
  -out "$tmp/backend.pem" -days 30 -extfile "$tmp/backend.ext" 2>/dev/null
# The client side of mTLS: its own CA, and a client certificate for the demo.
openssl req -x509 "${ec[@]}" -keyout "$tmp/clients-ca.key" -out "$tmp/clients-ca.pem" -days 30 \
  -subj "/CN=RustyGate lab client CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${ec[@]}" -keyout "$tmp/client.key" -out "$tmp/client.csr" -subj "/CN=lab-client" 2>/dev/null
printf '%s\n' "subjectAltName=URI:spiffe://lab/client" "extendedKeyUsage=clientAuth" "basicConstraints=CA:FALSE" \
  > "$tmp/client.ext"
openssl x509 -req -in "$tmp/client.csr" -CA "$tmp/clients-ca.pem" -CAkey "$tmp/clients-ca.key" -CAcreateserial \
  -out "$tmp/client.pem" -days 30 -extfile "$tmp/client.ext" 2>/dev/null
# The gateway in the compose stack runs as an unprivileged user: the key must be readable by it
# (the directory is the lab's own, git-ignored).
chmod 644 "$tmp/gateway.key" "$tmp/gateway.pem" "$tmp/ca.pem" "$tmp/clients-ca.pem" "$tmp/client.pem" \
  "$tmp/backend.key" "$tmp/backend.pem"
chmod 600 "$tmp/ca.key" "$tmp/clients-ca.key" "$tmp/client.key"
# Key first, then certificate, each by rename: a running gateway's watcher sees the pair change.
for f in ca.key ca.pem clients-ca.key clients-ca.pem client.key client.pem backend.key backend.pem gateway.key gateway.pem; do
  mv -f "$tmp/$f" "$dir/$f"
done
echo "lab_certs: new lab CAs, gateway and client certificates in $dir (valid 30 days)"
