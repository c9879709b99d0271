#!/usr/bin/env bash
# The native lab: three mock backends (ports 8001-8003) and the gateway (8080, admin 8081),
# all on loopback. Runs in the foreground with the gateway's JSON log on stdout; Ctrl-C (or
# `make down` from another terminal) stops everything it started. PIDs live in .lab/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/rustygate-target}"
profile="${PROFILE:-debug}"
bin="$target/$profile"
state=.lab
mkdir -p "$state"

if [ -s "$state/pids" ]; then
  echo "lab: already running (PIDs in $state/pids); run 'make down' first" >&2
  exit 1
fi

for port in 8001 8002 8003 8080 8081; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "lab: port $port is already in use; stop what uses it (or 'make down')" >&2
    exit 1
  fi
done

cleanup() {
  trap - INT TERM EXIT
  if [ -s "$state/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$state/pids"
    while read -r pid; do
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done < "$state/pids"
  fi
  rm -f "$state/pids"
  echo "lab: stopped" >&2
}
trap cleanup INT TERM EXIT

: > "$state/pids"
for i in 1 2 3; do
  "$bin/mock-backend" --port "800$i" --name "backend$i" > "$state/backend$i.log" 2>&1 &
  echo $! >> "$state/pids"
done
"$bin/rustygate" --config compose/rustygate.lab.yaml &
gw=$!
echo "$gw" >> "$state/pids"

for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null && break
  kill -0 "$gw" 2>/dev/null || { echo "lab: the gateway exited; see the lines above" >&2; exit 1; }
  sleep 0.1
done
cat >&2 <<MSG
lab: running — gateway http://127.0.0.1:8080 (admin http://127.0.0.1:8081, token lab-admin-token)
lab: backends http://127.0.0.1:8001 8002 8003 (logs in $state/)
lab: try   curl localhost:8080/api/test/echo
lab: stop  Ctrl-C here, or 'make down'
MSG
wait "$gw"
