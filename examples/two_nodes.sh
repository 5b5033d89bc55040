#!/bin/sh
# Two gateway nodes enforcing one global allocation through one Redis.
#
#   SRTM_STORAGE=redis://gw-redis:6379/0 sh two_nodes.sh
#
# Here both nodes run on this host, on ports NODE_A_PORT and NODE_B_PORT (8001, 8002 by
# default), behind whatever load balancer you use; on two hosts, run one uvicorn line on
# each. GATEWAY_NODES is the number of nodes: the share of capacity each takes if Redis
# fails. Ctrl-C (or SIGTERM) stops both; each closes its gate on the way out.
set -eu
: "${SRTM_STORAGE:?set SRTM_STORAGE to the Redis both nodes share, e.g. redis://gw-redis:6379/0}"
export SRTM_STORAGE
export GATEWAY_NODES="${GATEWAY_NODES:-2}"
cd "$(dirname "$0")"
"${PYTHON:-python3}" -m uvicorn starlette_app:app --host "${HOST:-127.0.0.1}" --port "${NODE_A_PORT:-8001}" &
node_a=$!
"${PYTHON:-python3}" -m uvicorn starlette_app:app --host "${HOST:-127.0.0.1}" --port "${NODE_B_PORT:-8002}" &
node_b=$!
trap 'kill -TERM "$node_a" "$node_b" 2>/dev/null' INT TERM
# wait returns when a signal arrives (the trap then stops both nodes); wait again for them.
wait "$node_a" "$node_b" || true
wait "$node_a" "$node_b" 2>/dev/null || true
