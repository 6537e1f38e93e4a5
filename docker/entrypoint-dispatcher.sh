#!/bin/sh
# Dispatcher container start: wait for the database, migrate, collect static files, make sure
# the workers have a join key, then run the ASGI server. Extra arguments go to run_dispatcher
# (e.g. --port 8001); the last --host/--port given wins.
set -eu
cd "$(dirname "$0")/.."

DATA_DIR="${ARIACLUSTER_DATA_DIR:-/app/data}"
WAIT_SECONDS="${ARIACLUSTER_DB_WAIT:-60}"
mkdir -p "$DATA_DIR"

waited=0
until python manage.py check --database default >/dev/null 2>&1; do
    waited=$((waited + 1))
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
        echo "entrypoint: the database is not reachable after ${WAIT_SECONDS} s:" >&2
        python manage.py check --database default >&2 || true
        exit 1
    fi
    echo "entrypoint: waiting for the database ..." >&2
    sleep 1
done

python manage.py migrate --noinput
python manage.py collectstatic --noinput --verbosity 0

# Workers of the same compose project read the join key from the shared data volume, unless
# ARIACLUSTER_JOIN_KEY is given to them. Created once; readable by this user only.
if [ -z "${ARIACLUSTER_JOIN_KEY:-}" ] && [ ! -s "$DATA_DIR/join_key" ]; then
    (
        umask 077
        python manage.py create_join_key --name compose --quiet >"$DATA_DIR/join_key.tmp"
        mv "$DATA_DIR/join_key.tmp" "$DATA_DIR/join_key"
    )
    echo "entrypoint: created a join key for the workers in $DATA_DIR/join_key" >&2
fi

exec python manage.py run_dispatcher --host 0.0.0.0 "$@"
