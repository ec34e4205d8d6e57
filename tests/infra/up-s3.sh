#!/usr/bin/env bash
# An S3-compatible server for the team-store tests: moto's standalone server (from the test
# extras, `moto[server]`), standing in for S3 / MinIO, on 127.0.0.1:55434. Each test makes
# and removes a bucket of its own. Idempotent: a server that answers on the port is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
STATE=${RUNCTL_TEST_S3_STATE:-/var/lib/runctl-test-s3}
PORT=${RUNCTL_TEST_S3_PORT:-55434}
mkdir -p "$STATE"
chmod 700 "$STATE"
answers() { python3 - "$PORT" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}
if ! answers; then
    server="$here/../../.venv/bin/moto_server"
    [ -x "$server" ] || server="$(command -v moto_server || true)"
    if [ -z "$server" ]; then
        echo "moto_server not found: install the test extras first (pip install -e '.[test]')" >&2
        exit 1
    fi
    setsid "$server" -H 127.0.0.1 -p "$PORT" >"$STATE/server.log" 2>&1 < /dev/null &
    echo $! >"$STATE/server.pid"
    for _ in $(seq 100); do answers && break; sleep 0.1; done
    answers || { echo "moto_server did not start; see $STATE/server.log" >&2; exit 1; }
fi
echo "s3 ok: http://127.0.0.1:$PORT (moto, standing in for S3; any access key works)"
