#!/usr/bin/env bash
# The load test: each configuration of examples/loadtest.rs on CPU 0, wrk on CPU 1, one after the
# other in one run, every request a GET carrying an HS256 token and an API key. Prints, for each:
# requests/s, latency p50 and p99 (wrk), and the server's CPU time per request (the sum of its
# threads' run time from /proc/PID/task/*/schedstat, divided by the requests wrk completed).
#
#   bash scripts/loadtest.sh                 # every configuration, 10 s each, 32 connections
#   DURATION=20 CONNECTIONS=64 STACKS="bare full" bash scripts/loadtest.sh
#
# Each configuration runs just after a bare one, and its `vs bare` is against that run.
# ROUNDS=N runs bare and every configuration in turn N times instead, and prints the median of
# each figure: on a machine whose speed drifts from minute to minute, the medians of interleaved
# runs compare configurations better than one pair does.
#
#   ROUNDS=8 DURATION=5 STACKS="full rate_limit_layer tower_governor" bash scripts/loadtest.sh
#
# A configuration may be sections joined with `+` (`jwt+audit`; see examples/loadtest.rs), and
# `NAME:N` runs NAME with a handler busy for N microseconds: `STACKS="bare:1 bare:3"` shows what
# a microsecond of the server's own work costs in all on this machine.
#
# Needs wrk (apt-get install wrk) and taskset; `full_redis` needs Redis at REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
STACKS=${STACKS:-"empty_stack jwt rate_limit rate_limit_github rate_limit_layer tower_governor versioning idempotency conditional audit full full_all full_redis"}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PORT=${PORT:-3100}
WORK=$(mktemp -d /tmp/api-policy-loadtest.XXXXXX)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --quiet --release --example loadtest --features jwt,redis
BIN=target/release/examples/loadtest
TOKEN=$("$BIN" --print-token)
cat > "$WORK/request.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["X-Api-Key"] = "k_load"
LUA

cpu_ns() { # the run time of every thread of process $1, in nanoseconds
  local total=0 t
  for t in /proc/"$1"/task/*/schedstat; do total=$((total + $(cut -d' ' -f1 "$t"))); done
  echo "$total"
}

# Runs one configuration; sets rps, p50, p99, cpu (us per request) and errors.
measure() {
  local stack=$1 before after requests work=0
  [[ $1 == *:* ]] && work=${1#*:}
  taskset -c 0 "$BIN" --stack "${1%%:*}" --handler-work-us "$work" --addr "127.0.0.1:$PORT" \
    --redis "$REDIS_URL" --audit-log "$WORK/$stack/audit.log" >"$WORK/$stack.server" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.05; done
  # A short warm-up (connections, caches, the allocator), then the measured run.
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/request.lua" \
    "http://127.0.0.1:$PORT/api/v2/patients/pat_1" >/dev/null
  before=$(cpu_ns "$SERVER")
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/request.lua" \
    "http://127.0.0.1:$PORT/api/v2/patients/pat_1" >"$WORK/$stack.wrk"
  after=$(cpu_ns "$SERVER")
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
  rm -rf "${WORK:?}/$stack" # the audit log: gigabytes over many rounds
  requests=$(awk '/requests in/ {print $1}' "$WORK/$stack.wrk")
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$stack.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/$stack.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$stack.wrk")
  errors=$(awk '/Non-2xx/ {print $NF}' "$WORK/$stack.wrk")
  cpu=$(awk -v ns=$((after - before)) -v n="$requests" 'BEGIN {printf "%.2f", ns / n / 1000}')
}

# wrk's latency (`812.00us`, `1.36ms`, `2.00s`) in microseconds.
to_us() {
  awk -v t="$1" 'BEGIN {v = t + 0; if (t ~ /ms$/) v *= 1000; else if (t ~ /[0-9]s$/) v *= 1000000; print v}'
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

if [ "${ROUNDS:-1}" -gt 1 ]; then
  declare -A runs
  for _ in $(seq "$ROUNDS"); do
    for stack in bare $STACKS; do
      measure "$stack"
      # p50 and p99 in microseconds, whatever unit wrk printed them in.
      runs[$stack]+="$rps $(to_us "$p50") $(to_us "$p99") $cpu ${errors:-0}"$'\n'
    done
  done
  printf '%-17s %10s %9s %9s %11s %8s %8s   (medians of %s runs)\n' stack "req/s" "p50 us" "p99 us" \
    "cpu us/req" "vs bare" "non-2xx" "$ROUNDS"
  bare_rps=$(printf '%s' "${runs[bare]}" | awk 'NF {print $1}' | median)
  for stack in bare $STACKS; do
    column() { printf '%s' "${runs[$stack]}" | awk -v c="$1" 'NF {print $c}' | median; }
    rps=$(column 1)
    printf '%-17s %10.0f %9.0f %9.0f %11.2f %8.2f %8d\n' "$stack" "$rps" "$(column 2)" \
      "$(column 3)" "$(column 4)" "$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN {print a / b}')" \
      "$(column 5)"
  done
  exit 0
fi

# A shared VM's speed drifts over minutes, so each configuration is compared with a bare run
# made just before it (PAIRED=0 runs each configuration once, against the last bare run).
printf '%-17s %10s %9s %9s %11s %8s %8s\n' stack "req/s" "p50" "p99" "cpu us/req" "vs bare" "non-2xx"
bare_rps=""
for stack in $STACKS; do
  if [ "$stack" != bare ] && [ "${PAIRED:-1}" = 1 ]; then
    measure bare
    bare_rps=$rps
    printf '%-17s %10s %9s %9s %11s %8s %8s\n' "  (bare)" "$rps" "$p50" "$p99" "$cpu" "" "${errors:-0}"
  fi
  measure "$stack"
  [ "$stack" = bare ] && bare_rps=$rps
  ratio=$(awk -v a="$rps" -v b="${bare_rps:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b}')
  printf '%-17s %10s %9s %9s %11s %8s %8s\n' "$stack" "$rps" "$p50" "$p99" "$cpu" "$ratio" "${errors:-0}"
done
