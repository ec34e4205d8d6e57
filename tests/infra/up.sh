#!/usr/bin/env bash
# Bring up the real services the test suite uses, idempotently (safe to run again).
# Each service gets its own script here; a service already up is left as it is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for svc in "$here"/up-*.sh; do
    [ -e "$svc" ] || continue
    echo "== $(basename "$svc")"
    bash "$svc"
done
