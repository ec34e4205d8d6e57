#!/usr/bin/env bash
# Run the whole test suite: install runctl (editable) with its test extras into ./.venv,
# lint and type-check (scripts/check), bring up the services the tests need
# (tests/infra/up.sh, idempotent), then pytest.
# Extra arguments go to pytest. With CI=true a service that cannot start fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
bash scripts/check
bash tests/infra/up.sh
exec .venv/bin/python -m pytest "$@"
