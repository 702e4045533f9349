#!/usr/bin/env bash
# Starts a local Redis Cluster of three masters (no replicas) for the cluster tests, unless one
# already answers on those ports. Nothing is persisted; the nodes run until killed.
#
#   bash scripts/redis-cluster.sh            # ports 7000, 7001, 7002
#   CLUSTER_PORTS="7100 7101 7102" bash scripts/redis-cluster.sh
#
# Prints the node URLs for REDIS_CLUSTER_URLS, comma-separated.
set -euo pipefail

PORTS=${CLUSTER_PORTS:-"7000 7001 7002"}
DIR=${CLUSTER_DIR:-/tmp/api-policy-redis-cluster}

cluster_ok() { redis-cli -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

urls=()
for port in $PORTS; do urls+=("redis://127.0.0.1:$port"); done
joined=$(IFS=,; echo "${urls[*]}")

first=${PORTS%% *}
if cluster_ok "$first"; then
  echo "$joined"
  exit 0
fi

mkdir -p "$DIR"
nodes=()
for port in $PORTS; do
  mkdir -p "$DIR/$port"
  rm -f "$DIR/$port/nodes.conf"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$DIR/$port" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --save "" --appendonly no --logfile "$DIR/$port/redis.log"
  nodes+=("127.0.0.1:$port")
done
for port in $PORTS; do
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$DIR/create.log" 2>&1 \
  || { cat "$DIR/create.log" >&2; exit 1; }
for _ in $(seq 100); do
  ok=1
  for port in $PORTS; do cluster_ok "$port" || ok=0; done
  [ "$ok" = 1 ] && break
  sleep 0.1
done
for port in $PORTS; do
  cluster_ok "$port" || { echo "the cluster is not ok on port $port" >&2; exit 1; }
done
echo "$joined"
