#!/usr/bin/env bash
# The soak test: the demo (examples/server/) with every policy on Redis, under mixed traffic for
# a while (ten minutes by default), its resident memory sampled every ten seconds.
#
#   bash scripts/soak.sh                      # 600 s, 32 connections
#   DURATION=120 CONNECTIONS=64 bash scripts/soak.sh
#
# The traffic cycles through what a real API sees: patient reads by doctors (JWT, rate limit,
# versioning, audit), v1 reads (deprecation headers), appointment reads with and without a
# matching If-None-Match (200 and 304), updates with a stale If-Match (412) or none (428),
# bookings with new Idempotency-Keys (rate limited to 5/min per caller: mostly 429), anonymous
# callers over their quota (429), garbage tokens (401), forged webhook deliveries (400), health
# checks. The tier quotas are raised from the demo's so most authenticated traffic gets through.
#
# Prints the answers by status, latency p50/p99 (wrk), and resident memory: at the end of the
# warm-up (the first fifth of the run), at the end, and the largest sample after the warm-up.
# Fails when any answer is a 5xx (the demo configures no fail-closed answer that this traffic
# should meet with Redis up), or when resident memory after the warm-up grows by more than
# MAX_GROWTH_PCT (10 by default) percent.
#
# Needs wrk (apt-get install wrk), taskset, curl, and Redis at REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600}
CONNECTIONS=${CONNECTIONS:-32}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PORT=${PORT:-3200}
MAX_GROWTH_PCT=${MAX_GROWTH_PCT:-10}
WORK=$(mktemp -d /tmp/api-policy-soak.XXXXXX)
trap 'kill "${SERVER:-0}" "${SAMPLER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --quiet --release --features jwt,axum,redis --example server --example mint_token
BIN=target/release/examples
mint() { "$BIN/mint_token" --ttl-secs $((DURATION + 600)) "$@"; }
DOCTOR=$(mint --role doctor --sub doc_soak --tier pro)
PATIENT=$(mint --role patient --sub pat_1 --tier pro)

# The demo's policies with quotas a soak's traffic does not exhaust (anonymous callers keep
# theirs, and booking its 5/min), and a fresh Redis key prefix, so earlier runs' keys do not
# replay.
sed -e 's|^pro = .*|pro = "1000000/s"|' -e 's|^free = .*|free = "1000000/s"|' \
  -e "s|^kind = \"memory\"|kind = \"redis\"\nurl = \"$REDIS_URL\"\nprefix = \"soak-$$-$(date +%s):\"|" \
  examples/server.toml >"$WORK/soak.toml"

taskset -c 0 "$BIN/server" --config "$WORK/soak.toml" --addr "127.0.0.1:$PORT" \
  --audit-log "$WORK/audit/phi-audit.log" --booking-latency-ms 5 >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" || { cat "$WORK/server.log"; exit 1; }
ETAG=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $DOCTOR" \
  "http://127.0.0.1:$PORT/api/v2/appointments/apt_1" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
[ -n "$ETAG" ] || { echo "no ETag on /api/v2/appointments/apt_1" >&2; exit 1; }

cat >"$WORK/mixed.lua" <<LUA
local doctor = "Bearer $DOCTOR"
local patient = "Bearer $PATIENT"
local etag = '$ETAG'
local requests = {}
local function add(weight, method, path, headers, body)
  for _ = 1, weight do
    requests[#requests + 1] = {method, path, headers, body}
  end
end
add(6, "GET", "/api/v2/patients/pat_1", {Authorization = doctor})
add(2, "GET", "/api/v2/patients/pat_1", {Authorization = patient})
add(1, "GET", "/api/v2/patients/pat_2", {Authorization = patient}) -- 403: not theirs
add(2, "GET", "/api/v1/appointments/apt_1", {Authorization = doctor})
add(2, "GET", "/api/v2/appointments/apt_2", {Authorization = doctor, ["Api-Version"] = "2024-04-10"})
add(2, "GET", "/api/v2/appointments/apt_1", {Authorization = doctor, ["If-None-Match"] = etag})
add(1, "PUT", "/api/v2/appointments/apt_3", {Authorization = doctor, ["If-Match"] = '"stale"',
  ["Content-Type"] = "application/json"}, '{"status":"confirmed"}')
add(1, "PUT", "/api/v2/appointments/apt_3", {Authorization = doctor,
  ["Content-Type"] = "application/json"}, '{"status":"confirmed"}')
add(1, "GET", "/api/v2/appointments/apt_4", {}) -- anonymous: over its 20/min at once
add(1, "GET", "/api/v2/patients/pat_1", {Authorization = "Bearer not.a.token"})
add(1, "POST", "/webhooks/stripe", {["Stripe-Signature"] = "t=1,v1=00", ["Content-Type"] = "application/json"},
  '{"id":"evt_forged","type":"payment_intent.succeeded"}')
add(1, "GET", "/health", {})
local booking = #requests + 1
add(1, "POST", "/api/v2/appointments", {Authorization = doctor, ["Content-Type"] = "application/json"},
  '{"slot_id":"slot_2026_12_03_1100","patient_id":"pat_3","reason":"soak"}')

local counter = 0
statuses = {}
local thread_id = 0
function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
  threads = threads or {}
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local i = counter % #requests + 1
  local r = requests[i]
  local headers = r[3]
  if i == booking then
    headers["Idempotency-Key"] = "soak-" .. id .. "-" .. counter
  end
  return wrk.format(r[1], r[2], headers, r[4])
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local keys = {}
  for status in pairs(total) do keys[#keys + 1] = status end
  table.sort(keys)
  for _, status in ipairs(keys) do
    io.write(string.format("status %d %d\n", status, total[status]))
  end
  io.write(string.format("p50_us %d\np99_us %d\nmax_us %d\n", latency:percentile(50),
    latency:percentile(99), latency.max))
end
LUA

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
(
  while kill -0 "$SERVER" 2>/dev/null; do
    echo "$(date +%s) $(rss_kib "$SERVER")"
    sleep 10
  done
) >"$WORK/rss" &
SAMPLER=$!
start=$(date +%s)

taskset -c 1 wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$WORK/mixed.lua" \
  "http://127.0.0.1:$PORT" >"$WORK/wrk" 2>&1 || { cat "$WORK/wrk"; exit 1; }
sleep 1
kill "$SAMPLER" 2>/dev/null || true
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

grep -E 'requests in|Requests/sec|Socket errors' "$WORK/wrk" || true
awk '/^status/ {printf "  %s: %d\n", $2, $3}' "$WORK/wrk"
awk '/^p50_us/ {printf "latency p50 %.2f ms", $2 / 1000} /^p99_us/ {printf ", p99 %.2f ms", $2 / 1000}
     /^max_us/ {printf ", max %.2f ms\n", $2 / 1000}' "$WORK/wrk"
server_errors=$(awk '/^status 5/ {n += $3} END {print n + 0}' "$WORK/wrk")
warm_until=$((start + DURATION / 5))
read -r warm last peak < <(awk -v w="$warm_until" '
  $1 >= w && warm == "" {warm = $2}
  $1 >= w {last = $2; if ($2 > peak) peak = $2}
  END {print warm, last, peak}' "$WORK/rss")
growth=$(awk -v a="$warm" -v b="$peak" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')
echo "resident memory: $((warm / 1024)) MiB after warm-up, $((last / 1024)) MiB at the end, $((peak / 1024)) MiB at most (+$growth%)"
echo "samples (seconds since start, MiB):"
awk -v s="$start" '{printf "  %4d s %5.1f", $1 - s, $2 / 1024; if (NR % 6 == 0) print ""} END {print ""}' "$WORK/rss"

status=0
if [ "$server_errors" -gt 0 ]; then
  echo "FAIL: $server_errors answers were 5xx; the server's log ends:"
  tail -20 "$WORK/server.log"
  status=1
fi
if awk -v g="$growth" -v m="$MAX_GROWTH_PCT" 'BEGIN {exit !(g > m)}'; then
  echo "FAIL: resident memory grew $growth% after the warm-up (at most $MAX_GROWTH_PCT%)"
  status=1
fi
exit "$status"
