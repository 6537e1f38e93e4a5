#!/bin/sh
# Worker container start: the agent with config/worker.json (if mounted) and env overrides.
# The join key comes from ARIACLUSTER_JOIN_KEY, else from the dispatcher's shared data volume.
set -eu
cd "$(dirname "$0")/.."

DATA_DIR="${ARIACLUSTER_DATA_DIR:-/app/data}"
if [ -z "${ARIACLUSTER_JOIN_KEY:-}" ] && [ -r "$DATA_DIR/join_key" ]; then
    ARIACLUSTER_JOIN_KEY="$(cat "$DATA_DIR/join_key")"
    export ARIACLUSTER_JOIN_KEY
fi

CONFIG="${ARIACLUSTER_WORKER_CONFIG:-/app/config/worker.json}"
if [ -f "$CONFIG" ]; then
    exec python -m worker_agent --config "$CONFIG" "$@"
fi
# No file: environment variables and defaults only (the agent's --config reads this variable).
unset ARIACLUSTER_WORKER_CONFIG
exec python -m worker_agent "$@"
