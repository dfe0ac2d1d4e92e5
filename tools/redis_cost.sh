#!/usr/bin/env bash
# What one room costs its Redis, by the number of nodes reading it: chat100's load
# (the bench's cluster row) against `python -m chat --workers N --redis`, for each N given,
# RUNS times each (interleaved); prints Redis's CPU time (INFO cpu) per line said.
#   tools/redis_cost.sh [N ...]        e.g. RUNS=3 tools/redis_cost.sh 1 2 4
# Needs redis-server and the load generator (make bench builds bench/build/loadgen).
# Run on an idle machine: the figures are CPU time, but a loaded machine still moves them.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
py=$root/.venv/bin/python; loadgen=$root/bench/build/loadgen
[ -x "$loadgen" ] || { echo "no $loadgen: run make bench first" >&2; exit 2; }
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_cpu() { redis-cli -p "$1" info cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {print s}'; }
log=$(mktemp); redis_pid=; chat_pid=
stop() {
  [ -n "$chat_pid" ] && kill -TERM "$chat_pid" 2>/dev/null && wait "$chat_pid" 2>/dev/null
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  chat_pid=; redis_pid=
}
trap 'stop; rm -f "$log"' EXIT
echo "nodes  delivered lines/s  Redis us per line said"
for _ in $(seq "${RUNS:-2}"); do
  for nodes in "${@:-1 2 4}"; do
    rport=$(free_port); cport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    redis_pid=$!
    until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
    "$py" -m chat --host 127.0.0.1 --port "$cport" --rate 0 --join-rate 0 --max-clients 20000 \
      --workers "$nodes" --redis "redis://127.0.0.1:$rport/0" 2>"$log" &
    chat_pid=$!
    until [ "$(grep -c 'chat listening on' "$log")" -ge "$nodes" ]; do sleep 0.1; done
    before=$(redis_cpu "$rport")
    out=$("$loadgen" chat --port "$cport" --members 100 --senders 10 --window 8 \
          --warmup 1 --duration 3 --drain 1 --timeout 30)
    after=$(redis_cpu "$rport")
    "$py" -c "import json, sys; d = json.loads(sys.argv[1]);
print(f\"{$nodes:5d}  {d['lines_s']:17,.0f}  {($after - $before) / d['sent'] * 1e6:22.2f}\")" "$out"
    stop
  done
done
