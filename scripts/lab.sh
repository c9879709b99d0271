#!/usr/bin/env bash
# The native lab: four mock backends (8001-8003, and 8004 over HTTPS), the gateway (8080, HTTPS 8443, admin 8081), the OTLP sink
# that stands in for Jaeger (OTLP 4317/4318, Jaeger's query API on 16686) and, when Debian's
# prometheus is installed, Prometheus (9090) scraping it — all on loopback, the same layout as
# the compose stack. PIDs and logs live in .lab/.
#
#   scripts/lab.sh run            foreground, gateway log on stdout; Ctrl-C stops everything
#   scripts/lab.sh start          detached (used by `make up` without a Docker engine)
#   scripts/lab.sh stop           stops what start/run started (by recorded PID), nothing else
#   scripts/lab.sh status         one line per process
#   scripts/lab.sh logs           tails the logs
#   scripts/lab.sh stop-backend N / start-backend N   (the demo's failover adapter)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/rustygate-target}"
bin="$target/${PROFILE:-debug}"
state=.lab
mkdir -p "$state"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port pid name
  for _ in $(seq 150); do
    port_busy "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "lab: $3 exited; see $state/$3.log" >&2; return 1; }
    sleep 0.1
  done
  echo "lab: $3 did not listen on :$1 within 15 s" >&2
  return 1
}

# Starts one process in the background, records "name pid" in .lab/pids.
spawn() { # name log command...
  local name=$1 log=$2
  shift 2
  "$@" > "$log" 2>&1 &
  echo "$name $!" >> "$state/pids"
}

start_backend() {
  spawn "backend$1" "$state/backend$1.log" "$bin/mock-backend" --port "800$1" --name "backend$1"
  wait_port "800$1" "$(pid_of "backend$1")" "backend$1"
}

pid_of() { awk -v n="$1" '$1 == n { p = $2 } END { print p }' "$state/pids" 2>/dev/null; }

stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

start() { # gateway_log
  if [ -s "$state/pids" ]; then
    echo "lab: already running (see '$0 status'); stop it first" >&2
    exit 1
  fi
  for f in "$bin/rustygate" "$bin/mock-backend" "$bin/otlp-sink"; do
    [ -x "$f" ] || { echo "lab: $f is missing; run 'make build'" >&2; exit 1; }
  done
  local ports="8001 8002 8003 8004 8080 8081 8443 4317 4318 16686"
  command -v prometheus >/dev/null && ports="$ports 9090"
  for port in $ports; do
    if port_busy "$port"; then
      echo "lab: port $port is already in use; stop what uses it" >&2
      exit 1
    fi
  done
  # The HTTPS listener's certificate (the lab CA's), made when missing or near expiry.
  ./scripts/lab_certs.sh
  : > "$state/pids"
  for i in 1 2 3; do start_backend "$i"; done
  # Backend 4 serves HTTPS with a certificate of the lab CA (the gateway's https:// upstream).
  spawn backend4 "$state/backend4.log" "$bin/mock-backend" --port 8004 --name backend4 \
    --tls-cert compose/certs/backend.pem --tls-key compose/certs/backend.key
  wait_port 8004 "$(pid_of backend4)" backend4
  # Before the gateway, so that its first spans find a receiver.
  spawn otlp-sink "$state/otlp-sink.log" "$bin/otlp-sink" --grpc 127.0.0.1:4317 \
    --http 127.0.0.1:4318 --http 127.0.0.1:16686
  wait_port 16686 "$(pid_of otlp-sink)" otlp-sink
  spawn gateway "$1" "$bin/rustygate" --config compose/rustygate.lab.yaml
  wait_port 8081 "$(pid_of gateway)" gateway
  if command -v prometheus >/dev/null; then
    mkdir -p "$state/prometheus"
    spawn prometheus "$state/prometheus.log" prometheus \
      --config.file=compose/prometheus/prometheus.native.yml \
      --storage.tsdb.path="$state/prometheus" \
      --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle
    wait_port 9090 "$(pid_of prometheus)" prometheus
  fi
  cat >&2 <<MSG
lab: running — gateway http://127.0.0.1:8080 (admin http://127.0.0.1:8081, token lab-admin-token)
lab: backends http://127.0.0.1:8001 8002 8003; traces (Jaeger's query API, otlp-sink) http://127.0.0.1:16686/api/traces/ID
lab: $(command -v prometheus >/dev/null && echo "Prometheus http://127.0.0.1:9090" || echo "no Prometheus (apt-get install prometheus)")
lab: logs in $state/; try: curl localhost:8080/api/test/echo
MSG
}

stop() {
  if [ ! -s "$state/pids" ]; then
    echo "lab: nothing running"
    return 0
  fi
  while read -r _ pid; do stop_pid "$pid"; done < "$state/pids"
  rm -f "$state/pids"
  echo "lab: stopped"
}

case "${1:-run}" in
  run)
    trap 'trap - INT TERM EXIT; stop >&2' INT TERM EXIT
    start /dev/stdout
    echo "lab: Ctrl-C stops everything" >&2
    wait "$(pid_of gateway)"
    ;;
  start)
    start "$state/gateway.log"
    ;;
  stop)
    stop
    ;;
  status)
    [ -s "$state/pids" ] || { echo "lab: nothing running"; exit 0; }
    while read -r name pid; do
      if kill -0 "$pid" 2>/dev/null; then echo "$name pid $pid running"; else echo "$name pid $pid exited"; fi
    done < "$state/pids"
    ;;
  logs)
    tail -n 20 -F "$state"/*.log
    ;;
  stop-backend)
    pid=$(pid_of "backend$2")
    [ -n "$pid" ] || { echo "lab: backend$2 unknown" >&2; exit 1; }
    stop_pid "$pid"
    # Forget the PID at once: a recycled PID must never be signalled later.
    awk -v n="backend$2" '$1 != n' "$state/pids" > "$state/pids.new" && mv "$state/pids.new" "$state/pids"
    ;;
  start-backend)
    start_backend "$2"
    ;;
  *)
    echo "usage: $0 run|start|stop|status|logs|stop-backend N|start-backend N" >&2
    exit 2
    ;;
esac
