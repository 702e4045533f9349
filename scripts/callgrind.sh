#!/usr/bin/env bash
# Instructions per request of configurations of examples/loadtest.rs, counted by callgrind: the
# server runs under `valgrind --tool=callgrind`, takes a warm-up on one keep-alive connection,
# then its counters are zeroed, REQUESTS more requests are sent on that connection, and the
# counters dumped. Instruction counts do not drift with the machine's speed, so two builds can
# be compared in one sitting where wall-clock figures would be noise.
#
#   bash scripts/callgrind.sh                          # full and rate_limit_layer
#   STACKS="bare full conditional" REQUESTS=4000 bash scripts/callgrind.sh
#   BIN=/tmp/loadtest-before bash scripts/callgrind.sh  # another build (a copy kept from before
#                                                     # a change), to compare in one sitting
#   KEEP=/tmp/cg bash scripts/callgrind.sh              # keep each dump, for callgrind_annotate
#
# Needs valgrind (apt-get install valgrind) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

STACKS=${STACKS:-"full rate_limit_layer"}
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-500}
PORT=${PORT:-3190}
WORK=$(mktemp -d /tmp/api-policy-callgrind.XXXXXX)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
if [[ -z ${BIN:-} ]]; then
  cargo build --quiet --release --example loadtest --features jwt,redis
  BIN=target/release/examples/loadtest
fi
TOKEN=$("$BIN" --print-token)

# Sends $2 GETs on one keep-alive connection to port $1; fails on any answer but 200.
send() {
  python3 - "$1" "$2" "$TOKEN" <<'PY'
import http.client, sys
port, count, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
headers = {"Authorization": "Bearer " + token, "X-Api-Key": "k_load"}
for _ in range(count):
    connection.request("GET", "/api/v2/patients/pat_1", headers=headers)
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"status {answer.status}")
PY
}

printf '%-24s %14s\n' configuration instructions/request
for stack in $STACKS; do
  out="$WORK/$stack.out"
  valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
    "$BIN" --stack "$stack" --addr "127.0.0.1:$PORT" --audit-log "$WORK/$stack/audit.log" \
    >"$WORK/$stack.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 600); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
  send "$PORT" "$WARMUP"
  callgrind_control -z "$SERVER" >/dev/null 2>&1
  send "$PORT" "$REQUESTS"
  callgrind_control -d "$SERVER" >/dev/null 2>&1
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
  # The dump after zeroing is the second file: <out>.<pid>.1 or <out>.1, by valgrind's version.
  dump=$(ls "$out"* | grep -E '\.1$' | head -1)
  total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
  printf '%-24s %14s\n' "$stack" "$((total / REQUESTS))"
  if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$stack.callgrind"; fi
done
