#!/usr/bin/env bash
# Stops what the native lab started (by the PIDs it recorded), and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=.lab/pids
if [ ! -s "$pids" ]; then
  echo "lab: nothing running"
  exit 0
fi
while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$pids"
while read -r pid; do
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
done < "$pids"
rm -f "$pids"
echo "lab: stopped"
